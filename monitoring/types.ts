/**
 * What one monitoring window of a deployment is: the input the monitor workflow hands its activity, and the summary
 * it gets back (and stores as the window's row). The report artifact holds the details (bins, top shifted values).
 * Plain data: it crosses Temporal and the HTTP API.
 */

export interface MonitorWindowInput {
  readonly deployment: string;
  /** The window's end, exclusive (ISO 8601); its start is `windowSeconds` earlier. */
  readonly windowEnd: string;
  readonly windowSeconds: number;
}

/** A distance between two distributions of one feature (or of the predictions), with the threshold it is held to. */
export interface DistanceMeasure {
  /** Jensen-Shannon divergence (numeric, base 2) or L-infinity distance (categorical); in [0, 1]. */
  readonly distance: number;
  readonly method: 'jensen_shannon' | 'l_infinity';
  /** Population stability index over the same bins, reported beside the distance (never thresholded). */
  readonly psi: number;
  readonly threshold: number;
  readonly breached: boolean;
}

export interface FeatureMonitoring {
  readonly feature: string;
  readonly kind: 'numeric' | 'categorical';
  /**
   * Serving window vs the serving version's training data: its prepared train split (every feature, as the model saw
   * it), else the training snapshot's column for a feature that is a bare column; absent without a baseline.
   */
  readonly skew?: DistanceMeasure;
  /** This window vs the previous window; absent for the first window. */
  readonly drift?: DistanceMeasure;
  readonly missingRate: number;
  readonly baselineMissingRate?: number;
  /** Categorical: values served that the training data never had (the most frequent first, at most 20). */
  readonly unseenCategories?: readonly string[];
}

export interface MonitoringBreach {
  readonly kind: 'skew' | 'drift' | 'performance';
  /** The feature (or `prediction`) for skew and drift; the metric for performance. */
  readonly subject: string;
  readonly value: number;
  readonly threshold: number;
}

export interface WindowSummary {
  readonly windowId: string;
  readonly deployment: string;
  readonly model: string;
  readonly version: number;
  readonly versionId: string;
  readonly windowStart: string;
  readonly windowEnd: string;
  /** Champion predictions logged in the window (successful ones). */
  readonly rows: number;
  /** Of those, the ones with feedback. */
  readonly labelledRows: number;
  readonly features: readonly FeatureMonitoring[];
  /** The predictions' own distribution (predicted class or value), skew against the training labels. */
  readonly prediction?: FeatureMonitoring;
  /** Metrics from feedback joined to the window's predictions (absent without labels). */
  readonly live?: Readonly<Record<string, number>>;
  /** Metrics estimated from the logged probabilities alone (classifiers; confidence-based estimation). */
  readonly estimated?: Readonly<Record<string, number>>;
  /** Live minus estimated, per metric, both over the labelled rows only: how far the estimate was off. */
  readonly estimateGap?: Readonly<Record<string, number>>;
  /** The version's evaluation metrics, for comparison. */
  readonly evaluation: Readonly<Record<string, number>>;
  readonly breaches: readonly MonitoringBreach[];
  readonly breached: boolean;
  /** Fewer rows than the definition's `minRows`: reported, raises nothing. */
  readonly belowMinRows: boolean;
  readonly reportUri?: string;
}
