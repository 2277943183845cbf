CREATE TABLE "dataset_schema_versions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"dataset" text NOT NULL,
	"version" integer NOT NULL,
	"artifact_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"actor" text NOT NULL,
	"reason" text NOT NULL,
	"report_artifact_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "dataset_schema_versions_dataset_version_unique" UNIQUE("dataset","version"),
	CONSTRAINT "dataset_schema_versions_version_positive" CHECK ("dataset_schema_versions"."version" > 0)
);
--> statement-breakpoint
CREATE TABLE "datasets" (
	"name" text PRIMARY KEY NOT NULL,
	"current_schema_version" integer,
	"baseline_statistics_artifact_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "dataset_schema_versions" ADD CONSTRAINT "dataset_schema_versions_dataset_datasets_name_fk" FOREIGN KEY ("dataset") REFERENCES "public"."datasets"("name") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dataset_schema_versions" ADD CONSTRAINT "dataset_schema_versions_artifact_id_artifacts_id_fk" FOREIGN KEY ("artifact_id") REFERENCES "public"."artifacts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "dataset_schema_versions" ADD CONSTRAINT "dataset_schema_versions_report_artifact_id_artifacts_id_fk" FOREIGN KEY ("report_artifact_id") REFERENCES "public"."artifacts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "datasets" ADD CONSTRAINT "datasets_baseline_statistics_artifact_id_artifacts_id_fk" FOREIGN KEY ("baseline_statistics_artifact_id") REFERENCES "public"."artifacts"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "dataset_schema_versions_artifact_idx" ON "dataset_schema_versions" USING btree ("artifact_id");