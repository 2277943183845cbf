CREATE TABLE "alert_deliveries" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"action_id" uuid NOT NULL,
	"url" text NOT NULL,
	"attempt" integer NOT NULL,
	"status" integer,
	"error" text,
	"duration_ms" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "monitoring_actions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"window_id" uuid NOT NULL,
	"deployment" text NOT NULL,
	"kind" text NOT NULL,
	"status" text NOT NULL,
	"reason" text NOT NULL,
	"details" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "monitoring_actions_window_kind_unique" UNIQUE("window_id","kind"),
	CONSTRAINT "monitoring_actions_kind_check" CHECK ("monitoring_actions"."kind" in ('alert', 'retrain', 'rollback'))
);
--> statement-breakpoint
CREATE TABLE "monitoring_windows" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"deployment" text NOT NULL,
	"model" text NOT NULL,
	"version_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"window_start" timestamp with time zone NOT NULL,
	"window_end" timestamp with time zone NOT NULL,
	"rows" integer NOT NULL,
	"labelled_rows" integer DEFAULT 0 NOT NULL,
	"breached" boolean DEFAULT false NOT NULL,
	"summary" jsonb NOT NULL,
	"report_uri" text,
	"report_sha256" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "monitoring_windows_deployment_span_unique" UNIQUE("deployment","window_start","window_end"),
	CONSTRAINT "monitoring_windows_span_check" CHECK ("monitoring_windows"."window_end" > "monitoring_windows"."window_start"),
	CONSTRAINT "monitoring_windows_rows_nonnegative" CHECK ("monitoring_windows"."rows" >= 0 and "monitoring_windows"."labelled_rows" >= 0)
);
--> statement-breakpoint
CREATE TABLE "pipeline_triggers" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"pipeline" text NOT NULL,
	"kind" text NOT NULL,
	"source" text NOT NULL,
	"dedupe_key" text NOT NULL,
	"status" text NOT NULL,
	"reason" text,
	"run_id" uuid,
	"details" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "pipeline_triggers_dedupe_key_unique" UNIQUE("dedupe_key"),
	CONSTRAINT "pipeline_triggers_kind_check" CHECK ("pipeline_triggers"."kind" in ('schedule', 'new_data', 'monitoring')),
	CONSTRAINT "pipeline_triggers_status_check" CHECK ("pipeline_triggers"."status" in ('started', 'skipped'))
);
--> statement-breakpoint
CREATE TABLE "prediction_feedback" (
	"request_id" text PRIMARY KEY NOT NULL,
	"label" jsonb NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	"actor" text NOT NULL
);
--> statement-breakpoint
CREATE TABLE "watched_objects" (
	"pipeline" text NOT NULL,
	"key" text NOT NULL,
	"etag" text NOT NULL,
	"size" bigint,
	"seen_by" text NOT NULL,
	"seen_at" timestamp with time zone DEFAULT now() NOT NULL,
	"trigger_id" uuid,
	CONSTRAINT "watched_objects_pk" PRIMARY KEY("pipeline","key","etag")
);
--> statement-breakpoint
ALTER TABLE "pipeline_runs" ADD COLUMN "resolved_spans" jsonb;--> statement-breakpoint
ALTER TABLE "alert_deliveries" ADD CONSTRAINT "alert_deliveries_action_id_monitoring_actions_id_fk" FOREIGN KEY ("action_id") REFERENCES "public"."monitoring_actions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "monitoring_actions" ADD CONSTRAINT "monitoring_actions_window_id_monitoring_windows_id_fk" FOREIGN KEY ("window_id") REFERENCES "public"."monitoring_windows"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "alert_deliveries_action_idx" ON "alert_deliveries" USING btree ("action_id");--> statement-breakpoint
CREATE INDEX "monitoring_actions_deployment_created_idx" ON "monitoring_actions" USING btree ("deployment","created_at");--> statement-breakpoint
CREATE INDEX "monitoring_windows_deployment_end_idx" ON "monitoring_windows" USING btree ("deployment","window_end");--> statement-breakpoint
CREATE INDEX "pipeline_triggers_pipeline_created_idx" ON "pipeline_triggers" USING btree ("pipeline","created_at");--> statement-breakpoint
CREATE INDEX "watched_objects_pending_idx" ON "watched_objects" USING btree ("pipeline","seen_at");--> statement-breakpoint
CREATE INDEX "prediction_logs_request_idx" ON "prediction_logs" USING btree ("request_id");