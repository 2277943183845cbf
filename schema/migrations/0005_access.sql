CREATE TABLE "api_keys" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" text NOT NULL,
	"prefix" text NOT NULL,
	"hash" text NOT NULL,
	"scopes" text[] NOT NULL,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"last_used_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	CONSTRAINT "api_keys_prefix_unique" UNIQUE("prefix"),
	CONSTRAINT "api_keys_scopes_known" CHECK ("api_keys"."scopes" <@ array['read','predict','trigger','approve','deploy','admin'])
);
--> statement-breakpoint
CREATE TABLE "connections" (
	"name" text PRIMARY KEY NOT NULL,
	"kind" text NOT NULL,
	"url" text NOT NULL,
	"secret_source" text,
	"secret" text,
	"description" text,
	"created_by" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "connections_kind_known" CHECK ("connections"."kind" in ('postgres')),
	CONSTRAINT "connections_secret_consistent" CHECK (("connections"."secret_source" is null) = ("connections"."secret" is null) and ("connections"."secret_source" is null or "connections"."secret_source" in ('encrypted', 'env', 'file')))
);
--> statement-breakpoint
CREATE UNIQUE INDEX "api_keys_live_name_unique" ON "api_keys" USING btree ("name") WHERE "api_keys"."revoked_at" is null;