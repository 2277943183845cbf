-- Registry actions (issue 17): versions get a description and key/value tags like models have, and alias moves are
-- audited in model_alias_changes (who moved which alias from which version to which, and why). Existing aliases get
-- no history rows: their past moves were never recorded.
CREATE TABLE "model_alias_changes" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"model_id" uuid NOT NULL,
	"alias" text NOT NULL,
	"from_version_id" uuid,
	"to_version_id" uuid,
	"actor" text NOT NULL,
	"reason" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "model_alias_changes_moves" CHECK ("model_alias_changes"."from_version_id" is not null or "model_alias_changes"."to_version_id" is not null)
);
--> statement-breakpoint
ALTER TABLE "model_versions" ADD COLUMN "description" text;--> statement-breakpoint
ALTER TABLE "model_versions" ADD COLUMN "tags" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "model_alias_changes" ADD CONSTRAINT "model_alias_changes_model_id_registered_models_id_fk" FOREIGN KEY ("model_id") REFERENCES "public"."registered_models"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "model_alias_changes" ADD CONSTRAINT "model_alias_changes_from_version_id_model_versions_id_fk" FOREIGN KEY ("from_version_id") REFERENCES "public"."model_versions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "model_alias_changes" ADD CONSTRAINT "model_alias_changes_to_version_id_model_versions_id_fk" FOREIGN KEY ("to_version_id") REFERENCES "public"."model_versions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "model_alias_changes_model_alias_created_idx" ON "model_alias_changes" USING btree ("model_id","alias","created_at");