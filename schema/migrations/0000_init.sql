CREATE TABLE "artifacts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"type" text NOT NULL,
	"uri" text NOT NULL,
	"sha256" text,
	"bytes" bigint,
	"content_type" text,
	"properties" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"state" text DEFAULT 'live' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "artifacts_uri_unique" UNIQUE("uri"),
	CONSTRAINT "artifacts_state_check" CHECK ("artifacts"."state" in ('pending', 'live', 'deleted')),
	CONSTRAINT "artifacts_bytes_nonnegative" CHECK ("artifacts"."bytes" >= 0)
);
--> statement-breakpoint
CREATE TABLE "associations" (
	"context_id" uuid NOT NULL,
	"execution_id" uuid NOT NULL,
	CONSTRAINT "associations_context_id_execution_id_pk" PRIMARY KEY("context_id","execution_id")
);
--> statement-breakpoint
CREATE TABLE "attributions" (
	"context_id" uuid NOT NULL,
	"artifact_id" uuid NOT NULL,
	CONSTRAINT "attributions_context_id_artifact_id_pk" PRIMARY KEY("context_id","artifact_id")
);
--> statement-breakpoint
CREATE TABLE "contexts" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"type" text NOT NULL,
	"name" text NOT NULL,
	"properties" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "contexts_type_name_unique" UNIQUE("type","name"),
	CONSTRAINT "contexts_type_check" CHECK ("contexts"."type" in ('pipeline', 'pipeline_run', 'experiment'))
);
--> statement-breakpoint
CREATE TABLE "deployment_revisions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"deployment_id" uuid NOT NULL,
	"version_id" uuid NOT NULL,
	"role" text NOT NULL,
	"traffic_percent" integer NOT NULL,
	"reason" text NOT NULL,
	"actor" text NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"ended_at" timestamp with time zone,
	CONSTRAINT "deployment_revisions_role_check" CHECK ("deployment_revisions"."role" in ('champion', 'challenger', 'shadow')),
	CONSTRAINT "deployment_revisions_traffic_percent_range" CHECK ("deployment_revisions"."traffic_percent" between 0 and 100)
);
--> statement-breakpoint
CREATE TABLE "deployments" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"model_id" uuid NOT NULL,
	"strategy" text DEFAULT 'replace' NOT NULL,
	"config" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "deployments_name_unique" UNIQUE("name"),
	CONSTRAINT "deployments_strategy_check" CHECK ("deployments"."strategy" in ('replace', 'canary', 'shadow'))
);
--> statement-breakpoint
CREATE TABLE "events" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"artifact_id" uuid NOT NULL,
	"execution_id" uuid NOT NULL,
	"type" text NOT NULL,
	"role" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "events_artifact_execution_type_role_unique" UNIQUE("artifact_id","execution_id","type","role"),
	CONSTRAINT "events_type_check" CHECK ("events"."type" in ('input', 'output'))
);
--> statement-breakpoint
CREATE TABLE "executions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"type" text NOT NULL,
	"name" text,
	"external_id" text NOT NULL,
	"workflow_id" text,
	"temporal_run_id" text,
	"stage" text,
	"state" text DEFAULT 'running' NOT NULL,
	"properties" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	CONSTRAINT "executions_external_id_unique" UNIQUE("external_id"),
	CONSTRAINT "executions_state_check" CHECK ("executions"."state" in ('running', 'complete', 'failed', 'cached', 'cancelled'))
);
--> statement-breakpoint
CREATE TABLE "model_aliases" (
	"model_id" uuid NOT NULL,
	"alias" text NOT NULL,
	"version_id" uuid NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "model_aliases_model_id_alias_pk" PRIMARY KEY("model_id","alias")
);
--> statement-breakpoint
CREATE TABLE "model_version_transitions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"version_id" uuid NOT NULL,
	"from_status" text,
	"to_status" text NOT NULL,
	"actor" text NOT NULL,
	"reason" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "model_version_transitions_from_status_check" CHECK ("model_version_transitions"."from_status" is null or "model_version_transitions"."from_status" in ('registered', 'blessed', 'rejected', 'archived')),
	CONSTRAINT "model_version_transitions_to_status_check" CHECK ("model_version_transitions"."to_status" in ('registered', 'blessed', 'rejected', 'archived'))
);
--> statement-breakpoint
CREATE TABLE "model_versions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"model_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"artifact_id" uuid,
	"onnx_uri" text NOT NULL,
	"sha256" text NOT NULL,
	"signature" jsonb NOT NULL,
	"metrics" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"params" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"blessing" jsonb,
	"status" text DEFAULT 'registered' NOT NULL,
	"code_version" text,
	"source_run_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "model_versions_model_version_unique" UNIQUE("model_id","version"),
	CONSTRAINT "model_versions_model_sha256_unique" UNIQUE("model_id","sha256"),
	CONSTRAINT "model_versions_status_check" CHECK ("model_versions"."status" in ('registered', 'blessed', 'rejected', 'archived')),
	CONSTRAINT "model_versions_version_positive" CHECK ("model_versions"."version" >= 1)
);
--> statement-breakpoint
CREATE TABLE "pipeline_run_stages" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"run_id" uuid NOT NULL,
	"stage" text NOT NULL,
	"status" text DEFAULT 'running' NOT NULL,
	"attempt" integer DEFAULT 1 NOT NULL,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	"outputs" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"failure" jsonb,
	CONSTRAINT "pipeline_run_stages_run_stage_unique" UNIQUE("run_id","stage"),
	CONSTRAINT "pipeline_run_stages_status_check" CHECK ("pipeline_run_stages"."status" in ('running', 'succeeded', 'failed', 'cached', 'skipped', 'cancelled')),
	CONSTRAINT "pipeline_run_stages_attempt_positive" CHECK ("pipeline_run_stages"."attempt" >= 1)
);
--> statement-breakpoint
CREATE TABLE "pipeline_runs" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"pipeline_version_id" uuid NOT NULL,
	"workflow_id" text NOT NULL,
	"temporal_run_id" text,
	"trigger" text NOT NULL,
	"triggered_by" text,
	"idempotency_key" text,
	"status" text DEFAULT 'pending' NOT NULL,
	"failure" jsonb,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"finished_at" timestamp with time zone,
	CONSTRAINT "pipeline_runs_workflow_id_unique" UNIQUE("workflow_id"),
	CONSTRAINT "pipeline_runs_idempotency_key_unique" UNIQUE("idempotency_key"),
	CONSTRAINT "pipeline_runs_status_check" CHECK ("pipeline_runs"."status" in ('pending', 'running', 'waiting_approval', 'succeeded', 'failed', 'cancelled'))
);
--> statement-breakpoint
CREATE TABLE "pipeline_versions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"pipeline_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"definition" jsonb NOT NULL,
	"definition_sha256" text NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "pipeline_versions_pipeline_version_unique" UNIQUE("pipeline_id","version"),
	CONSTRAINT "pipeline_versions_pipeline_definition_unique" UNIQUE("pipeline_id","definition_sha256"),
	CONSTRAINT "pipeline_versions_version_positive" CHECK ("pipeline_versions"."version" >= 1)
);
--> statement-breakpoint
CREATE TABLE "pipelines" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "pipelines_name_unique" UNIQUE("name")
);
--> statement-breakpoint
CREATE TABLE "registered_models" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"description" text,
	"tags" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "registered_models_name_unique" UNIQUE("name")
);
--> statement-breakpoint
ALTER TABLE "associations" ADD CONSTRAINT "associations_context_id_contexts_id_fk" FOREIGN KEY ("context_id") REFERENCES "public"."contexts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "associations" ADD CONSTRAINT "associations_execution_id_executions_id_fk" FOREIGN KEY ("execution_id") REFERENCES "public"."executions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "attributions" ADD CONSTRAINT "attributions_context_id_contexts_id_fk" FOREIGN KEY ("context_id") REFERENCES "public"."contexts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "attributions" ADD CONSTRAINT "attributions_artifact_id_artifacts_id_fk" FOREIGN KEY ("artifact_id") REFERENCES "public"."artifacts"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployment_revisions" ADD CONSTRAINT "deployment_revisions_deployment_id_deployments_id_fk" FOREIGN KEY ("deployment_id") REFERENCES "public"."deployments"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployment_revisions" ADD CONSTRAINT "deployment_revisions_version_id_model_versions_id_fk" FOREIGN KEY ("version_id") REFERENCES "public"."model_versions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "deployments" ADD CONSTRAINT "deployments_model_id_registered_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."registered_models"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "events" ADD CONSTRAINT "events_artifact_id_artifacts_id_fk" FOREIGN KEY ("artifact_id") REFERENCES "public"."artifacts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "events" ADD CONSTRAINT "events_execution_id_executions_id_fk" FOREIGN KEY ("execution_id") REFERENCES "public"."executions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "model_aliases" ADD CONSTRAINT "model_aliases_model_id_registered_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."registered_models"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "model_aliases" ADD CONSTRAINT "model_aliases_version_id_model_versions_id_fk" FOREIGN KEY ("version_id") REFERENCES "public"."model_versions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "model_version_transitions" ADD CONSTRAINT "model_version_transitions_version_id_model_versions_id_fk" FOREIGN KEY ("version_id") REFERENCES "public"."model_versions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "model_versions" ADD CONSTRAINT "model_versions_model_id_registered_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."registered_models"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "model_versions" ADD CONSTRAINT "model_versions_artifact_id_artifacts_id_fk" FOREIGN KEY ("artifact_id") REFERENCES "public"."artifacts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "model_versions" ADD CONSTRAINT "model_versions_source_run_id_pipeline_runs_id_fk" FOREIGN KEY ("source_run_id") REFERENCES "public"."pipeline_runs"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "pipeline_run_stages" ADD CONSTRAINT "pipeline_run_stages_run_id_pipeline_runs_id_fk" FOREIGN KEY ("run_id") REFERENCES "public"."pipeline_runs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "pipeline_runs" ADD CONSTRAINT "pipeline_runs_pipeline_version_id_pipeline_versions_id_fk" FOREIGN KEY ("pipeline_version_id") REFERENCES "public"."pipeline_versions"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "pipeline_versions" ADD CONSTRAINT "pipeline_versions_pipeline_id_pipelines_id_fk" FOREIGN KEY ("pipeline_id") REFERENCES "public"."pipelines"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "artifacts_type_created_idx" ON "artifacts" USING btree ("type","created_at");--> statement-breakpoint
CREATE INDEX "artifacts_sha256_idx" ON "artifacts" USING btree ("sha256");--> statement-breakpoint
CREATE INDEX "associations_execution_idx" ON "associations" USING btree ("execution_id");--> statement-breakpoint
CREATE INDEX "attributions_artifact_idx" ON "attributions" USING btree ("artifact_id");--> statement-breakpoint
CREATE INDEX "deployment_revisions_deployment_started_idx" ON "deployment_revisions" USING btree ("deployment_id","started_at");--> statement-breakpoint
CREATE INDEX "deployment_revisions_version_idx" ON "deployment_revisions" USING btree ("version_id");--> statement-breakpoint
CREATE UNIQUE INDEX "deployment_revisions_one_active_champion" ON "deployment_revisions" USING btree ("deployment_id") WHERE "deployment_revisions"."role" = 'champion' and "deployment_revisions"."ended_at" is null;--> statement-breakpoint
CREATE UNIQUE INDEX "deployment_revisions_active_version_unique" ON "deployment_revisions" USING btree ("deployment_id","version_id") WHERE "deployment_revisions"."ended_at" is null;--> statement-breakpoint
CREATE INDEX "deployments_model_idx" ON "deployments" USING btree ("model_id");--> statement-breakpoint
CREATE INDEX "events_execution_idx" ON "events" USING btree ("execution_id");--> statement-breakpoint
CREATE INDEX "executions_workflow_idx" ON "executions" USING btree ("workflow_id","stage");--> statement-breakpoint
CREATE INDEX "model_aliases_version_idx" ON "model_aliases" USING btree ("version_id");--> statement-breakpoint
CREATE INDEX "model_version_transitions_version_created_idx" ON "model_version_transitions" USING btree ("version_id","created_at");--> statement-breakpoint
CREATE INDEX "model_versions_source_run_idx" ON "model_versions" USING btree ("source_run_id");--> statement-breakpoint
CREATE INDEX "model_versions_artifact_idx" ON "model_versions" USING btree ("artifact_id");--> statement-breakpoint
CREATE INDEX "pipeline_runs_version_started_idx" ON "pipeline_runs" USING btree ("pipeline_version_id","started_at" DESC NULLS LAST);--> statement-breakpoint
CREATE INDEX "pipeline_runs_status_idx" ON "pipeline_runs" USING btree ("status");