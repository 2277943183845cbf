-- Lineage walks (GET /v1/lineage) follow one side of an artifact or an execution at a time: an artifact's producers
-- without first reading the entries of all its consumers (a snapshot can have thousands), an execution's inputs or
-- outputs alone. (execution_id, type) serves every lookup events_execution_idx did, so it replaces it.
DROP INDEX "events_execution_idx";--> statement-breakpoint
CREATE INDEX "events_artifact_type_idx" ON "events" USING btree ("artifact_id","type");--> statement-breakpoint
CREATE INDEX "events_execution_type_idx" ON "events" USING btree ("execution_id","type");
