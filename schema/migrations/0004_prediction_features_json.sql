-- Feature values are stored as received (json: a syntax check, no binary form): cheaper to write per logged row.
ALTER TABLE "prediction_logs" ALTER COLUMN "features" SET DATA TYPE json USING "features"::json;
