-- Serving logs at scale. `prediction_logs` becomes a table partitioned by UTC day on `logged_at`: one partition per
-- day in the schema `prediction_log_partitions` (created ahead by the maintenance schedule,
-- storage/prediction-log-partitions.ts) and a DEFAULT partition there, so an insert for a day without a partition
-- never fails. Days past the retention are exported to Parquet in S3 and dropped; `prediction_log_exports` records
-- each export.
--
-- Hand-written (drizzle-kit cannot express partitioning); the snapshot is drizzle-kit's for the schema, whose
-- composite key (id, logged_at) and indexes match what is created here, so `drizzle-kit generate` sees no change.
-- Existing rows are moved in this migration's transaction: fast on an empty or small table; on a very large one it
-- holds the table for as long as the copy takes (plan the upgrade, or export old rows first).
CREATE TABLE "prediction_log_exports" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"day" date NOT NULL,
	"partition" text NOT NULL,
	"uri" text NOT NULL,
	"rows" bigint NOT NULL,
	"min_id" bigint,
	"max_id" bigint,
	"bytes" bigint NOT NULL,
	"sha256" text NOT NULL,
	"exported_at" timestamp with time zone DEFAULT now() NOT NULL,
	"dropped_at" timestamp with time zone,
	CONSTRAINT "prediction_log_exports_uri_unique" UNIQUE("uri"),
	CONSTRAINT "prediction_log_exports_rows_nonnegative" CHECK ("prediction_log_exports"."rows" >= 0 and "prediction_log_exports"."bytes" >= 0)
);
--> statement-breakpoint
CREATE UNIQUE INDEX "prediction_log_exports_pending_day_idx" ON "prediction_log_exports" USING btree ("day") WHERE "prediction_log_exports"."dropped_at" is null;--> statement-breakpoint
CREATE INDEX "prediction_log_exports_day_idx" ON "prediction_log_exports" USING btree ("day");--> statement-breakpoint
CREATE SCHEMA IF NOT EXISTS "prediction_log_partitions";--> statement-breakpoint
-- Index names are schema-wide: free them (and the key) before the partitioned table takes them over.
DROP INDEX "prediction_logs_deployment_logged_idx";--> statement-breakpoint
DROP INDEX "prediction_logs_version_logged_idx";--> statement-breakpoint
DROP INDEX "prediction_logs_request_idx";--> statement-breakpoint
ALTER TABLE "prediction_logs" DROP CONSTRAINT "prediction_logs_pkey";--> statement-breakpoint
ALTER TABLE "prediction_logs" RENAME TO "prediction_logs_unpartitioned";--> statement-breakpoint
CREATE TABLE "prediction_logs" (
	"id" bigint DEFAULT nextval('prediction_logs_id_seq'::regclass) NOT NULL,
	"request_id" text NOT NULL,
	"logged_at" timestamp with time zone NOT NULL,
	"deployment" text,
	"model" text NOT NULL,
	"version_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"role" text NOT NULL,
	"features" json NOT NULL,
	"outputs" jsonb,
	"latency_ms" real NOT NULL,
	"error" text,
	CONSTRAINT "prediction_logs_pk" PRIMARY KEY("id","logged_at"),
	CONSTRAINT "prediction_logs_role_check" CHECK ("prediction_logs"."role" in ('champion', 'challenger', 'shadow')),
	CONSTRAINT "prediction_logs_latency_nonnegative" CHECK ("prediction_logs"."latency_ms" >= 0)
) PARTITION BY RANGE ("logged_at");--> statement-breakpoint
-- The same sequence goes on numbering rows; owned by the new table so it is not dropped with the old one.
ALTER SEQUENCE "prediction_logs_id_seq" OWNED BY "prediction_logs"."id";--> statement-breakpoint
CREATE INDEX "prediction_logs_deployment_logged_idx" ON "prediction_logs" USING btree ("deployment","logged_at");--> statement-breakpoint
CREATE INDEX "prediction_logs_version_logged_idx" ON "prediction_logs" USING btree ("version_id","logged_at");--> statement-breakpoint
CREATE INDEX "prediction_logs_request_idx" ON "prediction_logs" USING btree ("request_id");--> statement-breakpoint
CREATE TABLE "prediction_log_partitions"."p_default" PARTITION OF "prediction_logs" DEFAULT;--> statement-breakpoint
-- One partition per day that has rows, named and bounded as storage/prediction-log-partitions.ts names them.
DO $$
DECLARE
	day date;
BEGIN
	FOR day IN SELECT DISTINCT ("logged_at" AT TIME ZONE 'UTC')::date FROM "prediction_logs_unpartitioned" LOOP
		EXECUTE format(
			'CREATE TABLE "prediction_log_partitions".%I PARTITION OF "prediction_logs" FOR VALUES FROM (%L) TO (%L)',
			'p' || to_char(day, 'YYYYMMDD'),
			to_char(day, 'YYYY-MM-DD') || ' 00:00:00+00',
			to_char(day + 1, 'YYYY-MM-DD') || ' 00:00:00+00'
		);
	END LOOP;
END
$$;--> statement-breakpoint
INSERT INTO "prediction_logs" ("id", "request_id", "logged_at", "deployment", "model", "version_id", "version", "role", "features", "outputs", "latency_ms", "error")
	SELECT "id", "request_id", "logged_at", "deployment", "model", "version_id", "version", "role", "features", "outputs", "latency_ms", "error"
	FROM "prediction_logs_unpartitioned";--> statement-breakpoint
DROP TABLE "prediction_logs_unpartitioned";
