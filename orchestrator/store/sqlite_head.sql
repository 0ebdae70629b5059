-- A new SQLite job store at revision 0009: the schema the migrations make.
-- Written by `make sqlite-head` after a new migration; do not edit by hand.

CREATE TABLE alembic_version (
	version_num VARCHAR(32) NOT NULL, 
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

CREATE TABLE api_backoff (
	scope VARCHAR(32) NOT NULL, 
	backoff_until DATETIME NOT NULL, 
	reason TEXT, 
	CONSTRAINT pk_api_backoff PRIMARY KEY (scope)
);

CREATE TABLE "batch_requests" (
	id INTEGER NOT NULL, 
	batch_id INTEGER NOT NULL, 
	item_id INTEGER NOT NULL, 
	attempt INTEGER NOT NULL, 
	custom_id VARCHAR(64) NOT NULL, 
	CONSTRAINT fk_batch_requests_batch_id_batches FOREIGN KEY(batch_id) REFERENCES batches (id) ON DELETE CASCADE, 
	CONSTRAINT pk_batch_requests PRIMARY KEY (id), 
	CONSTRAINT uq_batch_requests_batch_id_custom_id UNIQUE (batch_id, custom_id), 
	CONSTRAINT uq_batch_requests_batch_id_item_id UNIQUE (batch_id, item_id)
);

CREATE TABLE "batches" (
	id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	remote_id TEXT, 
	request_count INTEGER NOT NULL, 
	body_bytes BIGINT NOT NULL, 
	intent_at DATETIME, 
	submitted_at DATETIME, 
	remote_created_at DATETIME, 
	expires_at DATETIME, 
	ended_at DATETIME, 
	ingested_at DATETIME, 
	processing_status VARCHAR(32), 
	succeeded_count INTEGER, 
	errored_count INTEGER, 
	canceled_count INTEGER, 
	expired_count INTEGER, 
	results_url TEXT, 
	cancel_requested BOOLEAN DEFAULT (false) NOT NULL, 
	last_error TEXT, 
	ingest_attempts INTEGER DEFAULT '0' NOT NULL, 
	next_attempt_at DATETIME, 
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	lease_owner VARCHAR(128), 
	lease_expires_at DATETIME, 
	lease_version INTEGER DEFAULT '0' NOT NULL, 
	endpoint TEXT, 
	adopted BOOLEAN DEFAULT false NOT NULL, 
	reconcile_until DATETIME, proven_at DATETIME, 
	CONSTRAINT ck_batches_batch_status CHECK (status IN ('planned', 'creating', 'unknown', 'in_progress', 'canceling', 'ended', 'ingested', 'unavailable', 'rejected')), 
	CONSTRAINT ck_batches_creating_has_intent CHECK (status NOT IN ('creating', 'unknown') OR intent_at IS NOT NULL), 
	CONSTRAINT ck_batches_remote_status_has_remote_id CHECK (NOT (status IN ('in_progress', 'canceling', 'ended', 'ingested', 'unavailable')) OR remote_id IS NOT NULL), 
	CONSTRAINT ck_batches_request_count_range CHECK (request_count BETWEEN 1 AND 100000), 
	CONSTRAINT fk_batches_job_id_jobs FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE, 
	CONSTRAINT pk_batches PRIMARY KEY (id), 
	CONSTRAINT uq_batches_remote_id UNIQUE (remote_id)
);

CREATE TABLE duplicate_batches (
	remote_id TEXT NOT NULL, 
	batch_id INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	paid_requests INTEGER DEFAULT '0' NOT NULL, 
	found_at DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL, 
	CONSTRAINT fk_duplicate_batches_batch_id_batches FOREIGN KEY(batch_id) REFERENCES batches (id) ON DELETE CASCADE, 
	CONSTRAINT pk_duplicate_batches PRIMARY KEY (remote_id)
);

CREATE TABLE foreign_batches (
	remote_id TEXT NOT NULL, 
	batch_id INTEGER, 
	reason TEXT NOT NULL, 
	found_at DATETIME DEFAULT CURRENT_TIMESTAMP NOT NULL, 
	CONSTRAINT pk_foreign_batches PRIMARY KEY (remote_id)
);

CREATE TABLE items (
	id INTEGER NOT NULL, 
	job_id INTEGER NOT NULL, 
	ordinal INTEGER NOT NULL, 
	"key" TEXT NOT NULL, 
	params TEXT NOT NULL, 
	params_hash VARCHAR(64) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	attempts INTEGER DEFAULT '0' NOT NULL, 
	custom_id VARCHAR(64), 
	batch_id INTEGER, 
	final_result_id INTEGER, 
	cached BOOLEAN DEFAULT (false) NOT NULL, 
	error_type VARCHAR(64), 
	error_message TEXT, 
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, input TEXT, leader_id INTEGER, 
	CONSTRAINT ck_items_attempts_nonnegative CHECK (attempts >= 0), 
	CONSTRAINT ck_items_item_status CHECK (status IN ('pending', 'queued', 'succeeded', 'failed', 'canceled')), 
	CONSTRAINT ck_items_queued_has_batch CHECK (status <> 'queued' OR batch_id IS NOT NULL), 
	CONSTRAINT ck_items_succeeded_has_result CHECK (status <> 'succeeded' OR final_result_id IS NOT NULL), 
	CONSTRAINT fk_items_batch_id_batches FOREIGN KEY(batch_id) REFERENCES batches (id), 
	CONSTRAINT fk_items_job_id_jobs FOREIGN KEY(job_id) REFERENCES jobs (id) ON DELETE CASCADE, 
	CONSTRAINT pk_items PRIMARY KEY (id), 
	CONSTRAINT uq_items_job_id_key UNIQUE (job_id, "key")
);

CREATE TABLE "jobs" (
	id INTEGER NOT NULL, 
	name VARCHAR(200) NOT NULL, 
	content_hash VARCHAR(64) NOT NULL, 
	spec_path TEXT NOT NULL, 
	spec JSON NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	max_attempts INTEGER NOT NULL, 
	max_requests INTEGER NOT NULL, 
	max_bytes INTEGER NOT NULL, 
	use_cache BOOLEAN NOT NULL, 
	budget_usd FLOAT, 
	schedule VARCHAR(100), 
	api_version VARCHAR(20) NOT NULL, 
	items_total INTEGER DEFAULT '0' NOT NULL, 
	cache_hits INTEGER DEFAULT '0' NOT NULL, 
	cache_saved_usd FLOAT DEFAULT '0' NOT NULL, 
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	updated_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	finished_at DATETIME, 
	canceled_at DATETIME, 
	lease_owner VARCHAR(128), 
	lease_expires_at DATETIME, 
	lease_version INTEGER DEFAULT '0' NOT NULL, 
	output_mode VARCHAR(16), 
	output_schema JSON, 
	output_tool VARCHAR(64), 
	input_columns JSON, 
	view_name VARCHAR(80), betas JSON, 
	CONSTRAINT ck_jobs_job_status CHECK (status IN ('active', 'done', 'canceled')), 
	CONSTRAINT ck_jobs_max_attempts_positive CHECK (max_attempts >= 1), 
	CONSTRAINT ck_jobs_max_bytes_range CHECK (max_bytes BETWEEN 1 AND 256000000), 
	CONSTRAINT ck_jobs_max_requests_range CHECK (max_requests BETWEEN 1 AND 100000), 
	CONSTRAINT pk_jobs PRIMARY KEY (id), 
	CONSTRAINT uq_jobs_name UNIQUE (name), 
	CONSTRAINT uq_jobs_view_name UNIQUE (view_name)
);

CREATE TABLE orchestrator_meta (
	"key" VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	CONSTRAINT pk_orchestrator_meta PRIMARY KEY ("key")
);

CREATE TABLE quarantine (
	id INTEGER NOT NULL, 
	batch_id INTEGER NOT NULL, 
	line_no INTEGER NOT NULL, 
	custom_id TEXT, 
	raw TEXT NOT NULL, 
	error TEXT NOT NULL, 
	created_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	CONSTRAINT fk_quarantine_batch_id_batches FOREIGN KEY(batch_id) REFERENCES batches (id) ON DELETE CASCADE, 
	CONSTRAINT pk_quarantine PRIMARY KEY (id), 
	CONSTRAINT uq_quarantine_batch_id_line_no UNIQUE (batch_id, line_no)
);

CREATE TABLE "results" (
	id INTEGER NOT NULL, 
	batch_id INTEGER NOT NULL, 
	item_id INTEGER NOT NULL, 
	custom_id VARCHAR(64) NOT NULL, 
	attempt INTEGER NOT NULL, 
	result_type VARCHAR(16) NOT NULL, 
	message_id TEXT, 
	model VARCHAR(100), 
	stop_reason VARCHAR(64), 
	stop_sequence TEXT, 
	text TEXT, 
	content TEXT, 
	input_tokens INTEGER, 
	output_tokens INTEGER, 
	cache_creation_input_tokens INTEGER, 
	cache_read_input_tokens INTEGER, 
	cache_creation_5m_input_tokens INTEGER, 
	cache_creation_1h_input_tokens INTEGER, 
	service_tier VARCHAR(32), 
	inference_geo VARCHAR(32), 
	error_type VARCHAR(64), 
	error_message TEXT, 
	cost_usd FLOAT, 
	ingested_at DATETIME DEFAULT (CURRENT_TIMESTAMP) NOT NULL, 
	output TEXT, 
	output_error TEXT, 
	CONSTRAINT ck_results_errored_has_error CHECK (result_type <> 'errored' OR error_type IS NOT NULL), 
	CONSTRAINT ck_results_result_type_known CHECK (result_type IN ('succeeded', 'errored', 'canceled', 'expired')), 
	CONSTRAINT ck_results_succeeded_has_message CHECK (result_type <> 'succeeded' OR message_id IS NOT NULL), 
	CONSTRAINT fk_results_batch_id_batches FOREIGN KEY(batch_id) REFERENCES batches (id) ON DELETE CASCADE, 
	CONSTRAINT pk_results PRIMARY KEY (id), 
	CONSTRAINT uq_results_batch_id_custom_id UNIQUE (batch_id, custom_id)
);

CREATE INDEX ix_batch_requests_item_id ON batch_requests (item_id);

CREATE INDEX ix_batches_job_id ON batches (job_id);

CREATE INDEX ix_batches_status ON batches (status);

CREATE INDEX ix_items_batch_id ON items (batch_id);

CREATE INDEX ix_items_final_result_id ON items (final_result_id);

CREATE INDEX ix_items_job_id_status ON items (job_id, status);

CREATE INDEX ix_items_params_hash ON items (params_hash);

CREATE INDEX ix_jobs_status ON jobs (status);

CREATE INDEX ix_results_item_id ON results (item_id);

CREATE UNIQUE INDEX uq_batches_one_count_in_flight ON batches (request_count) WHERE status IN ('creating', 'unknown');

CREATE UNIQUE INDEX uq_batches_one_create_per_job ON batches (job_id) WHERE status IN ('creating', 'unknown');

CREATE VIEW final_results AS
SELECT
    j.id AS job_id,
    j.name AS job_name,
    i.id AS item_id,
    i.key AS key,
    i.ordinal AS ordinal,
    i.custom_id AS custom_id,
    i.attempts AS attempts,
    i.status AS status,
    r.result_type AS result_type,
    r.text AS text,
    r.stop_reason AS stop_reason,
    r.model AS model,
    r.message_id AS message_id,
    r.input_tokens AS input_tokens,
    r.output_tokens AS output_tokens,
    r.cache_creation_input_tokens AS cache_creation_input_tokens,
    r.cache_read_input_tokens AS cache_read_input_tokens,
    CASE WHEN i.cached THEN 0.0 ELSE r.cost_usd END AS cost_usd,
    i.cached AS cached,
    COALESCE(r.error_type, i.error_type) AS error_type,
    COALESCE(r.error_message, i.error_message) AS error_message,
    i.updated_at AS updated_at,
    i.input AS input,
    r.output AS output,
    r.output_error AS output_error,
    r.content AS content
FROM items AS i
JOIN jobs AS j ON j.id = i.job_id
LEFT JOIN results AS r ON r.id = i.final_result_id;

INSERT INTO alembic_version (version_num) VALUES ('0009');
