CREATE TABLE "prediction_logs" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"request_id" text NOT NULL,
	"logged_at" timestamp with time zone NOT NULL,
	"deployment" text,
	"model" text NOT NULL,
	"version_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"role" text NOT NULL,
	"features" jsonb NOT NULL,
	"outputs" jsonb,
	"latency_ms" real NOT NULL,
	"error" text,
	CONSTRAINT "prediction_logs_role_check" CHECK ("prediction_logs"."role" in ('champion', 'challenger', 'shadow')),
	CONSTRAINT "prediction_logs_latency_nonnegative" CHECK ("prediction_logs"."latency_ms" >= 0)
);
--> statement-breakpoint
CREATE INDEX "prediction_logs_deployment_logged_idx" ON "prediction_logs" USING btree ("deployment","logged_at");--> statement-breakpoint
CREATE INDEX "prediction_logs_version_logged_idx" ON "prediction_logs" USING btree ("version_id","logged_at");