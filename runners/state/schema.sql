-- The state store: every run, mailbox, folder and message the engine has touched (SQLite; the
-- statuses of each column are also runners/state/statuses.py, one StrEnum per column).
-- Statuses of a message: pending (APPEND about to be sent: the intent; written by this version as
-- a batch intent, batch_intents, and by older ones as the message's row), copied, skipped, failed,
-- superseded (from an older UIDVALIDITY, kept until a pass under the new one completes),
-- waived (an operator decided it is not copied: `cutover skip`, with the reason).

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS runs (
    id        INTEGER PRIMARY KEY,
    wave      TEXT NOT NULL,
    kind      TEXT NOT NULL,            -- full | delta | retry (only what failed before: --retry-failed)
    started   REAL NOT NULL,
    ended     REAL,
    status    TEXT NOT NULL,            -- running | ok | partial | failed | interrupted (its process died)
    pid       INTEGER,
    host      TEXT,
    workers   INTEGER,
    summary   TEXT,                     -- JSON, written at the end
    operator  TEXT,                     -- who launched it: user@host (ssh from addr port)
    controls_from INTEGER               -- the newest control request when it started: later ones apply to it
);

CREATE TABLE IF NOT EXISTS mailboxes (
    id             INTEGER PRIMARY KEY,
    source         TEXT NOT NULL UNIQUE,
    target         TEXT NOT NULL,
    wave           TEXT NOT NULL,
    -- pending (not started, or interrupted) | running | paused | cancelled | ok | partial | failed
    state          TEXT NOT NULL DEFAULT 'pending',
    run_id         INTEGER,
    owner          TEXT,                              -- host:pid of the runner holding it
    heartbeat      REAL,
    started        REAL,
    updated        REAL,
    messages_total INTEGER NOT NULL DEFAULT 0,
    bytes_total    INTEGER NOT NULL DEFAULT 0,
    messages_done  INTEGER NOT NULL DEFAULT 0,
    bytes_done     INTEGER NOT NULL DEFAULT 0,
    failed         INTEGER NOT NULL DEFAULT 0,   -- messages failed / skipped in the current run
    skipped        INTEGER NOT NULL DEFAULT 0,
    current_folder TEXT,
    error          TEXT,
    error_kind     TEXT,
    -- JSON: the target's folder layout as the last pass that opened the target saw it, so that a
    -- delta pass over an unchanged mailbox maps its folders without logging in to the target
    target_layout  TEXT,
    -- The lease's fencing token: raised by every claim, so a runner whose lease was taken over can
    -- write nothing more (runners.state.fence)
    lease_token    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS folders (
    id                 INTEGER PRIMARY KEY,
    mailbox_id         INTEGER NOT NULL REFERENCES mailboxes(id),
    source_name        TEXT NOT NULL,
    source_path        TEXT NOT NULL,
    target_name        TEXT NOT NULL,
    excluded           TEXT,
    -- The source folder's state when the last complete pass began; NULL until one completed.
    uidvalidity        INTEGER,
    uidnext            INTEGER,
    messages           INTEGER,
    bytes              INTEGER,            -- the source folder's size as of that pass
    highestmodseq      INTEGER,
    error              TEXT,
    updated            REAL,
    UNIQUE (mailbox_id, source_name)
);

CREATE TABLE IF NOT EXISTS messages (
    folder_id     INTEGER NOT NULL REFERENCES folders(id),
    uidvalidity   INTEGER NOT NULL,
    src_key       TEXT NOT NULL,
    src_uid       INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    internaldate  TEXT,
    flags         TEXT NOT NULL DEFAULT '',
    sha256        BLOB,
    target_name   TEXT,
    target_id     TEXT,                    -- the target's id for the copy, opaque (IMAP: the UID)
    status        TEXT NOT NULL,           -- pending | copied | skipped | failed | superseded | waived
    reason        TEXT,
    recovery_mark TEXT,                    -- the target adapter's mark before the APPEND, opaque
                                           -- (IMAP: the folder's UIDNEXT); pending rows only
    attempts      INTEGER NOT NULL DEFAULT 0,
    run_id        INTEGER,
    updated       REAL,
    sent_size     INTEGER,                  -- bytes of the message as the source served it (what an
                                           -- IMAP target was sent); NULL in rows written before it
    PRIMARY KEY (folder_id, uidvalidity, src_key)
) WITHOUT ROWID;

-- The rows not copied, by folder: pending intents (recovery), failures and skips (the failure views,
-- a retry), superseded rows. Partial: a copied row (nearly every row) leaves it, so a copy's outcome
-- deletes its entry instead of moving it, and a fleet's store doesn't index its copies. SQLite uses it
-- only for a query that states its condition word for word (store.NOT_COPIED). Stores made before
-- it had messages_status (status, folder_id), over every row: dropped here.
CREATE INDEX IF NOT EXISTS messages_not_copied ON messages (folder_id, status) WHERE status != 'copied';
DROP INDEX IF EXISTS messages_status;

-- An APPEND about to be sent, one row for every message it carries (StateStore.record_sent): written
-- before the bytes leave, deleted in the transaction that writes the messages' own rows, once the
-- target answered. While it stands, its messages are pending: the next pass hands them to the
-- target's recovery (StateStore.pending). One row a batch instead of a pending row a message, which
-- its outcome then rewrote: a copied message's row is written once. ``messages``: JSON, a list of
-- [src_key, src_uid, size, internaldate, flags, sent_size] in APPEND order; ``digests``: their
-- SHA-256s, 32 bytes each, in the same order (as hex in the JSON they would double its size, and a
-- row over a page spills into overflow pages, which every batch would write and free). No index:
-- it holds the batches in flight (one a copying connection) and those a crash left, a few rows, and
-- an index would be one more page every batch's transaction writes.
CREATE TABLE IF NOT EXISTS batch_intents (
    id            INTEGER PRIMARY KEY,
    folder_id     INTEGER NOT NULL REFERENCES folders(id),
    uidvalidity   INTEGER NOT NULL,
    target_name   TEXT NOT NULL,
    recovery_mark TEXT,                    -- the target adapter's mark before the APPEND, opaque
    run_id        INTEGER,
    updated       REAL,
    carried       INTEGER NOT NULL,            -- how many messages it carries
    messages      TEXT NOT NULL,
    digests       BLOB NOT NULL
);

-- Every outcome that left a message not copied (failed, skipped, then waived by an operator), oldest
-- first: the failure drill-down's retry history. Append-only, written in the transaction that
-- updates the message's ledger row; copied messages never write here, so the hot path doesn't pay.
CREATE TABLE IF NOT EXISTS message_attempts (
    id           INTEGER PRIMARY KEY,
    folder_id    INTEGER NOT NULL REFERENCES folders(id),
    uidvalidity  INTEGER NOT NULL,           -- with folder_id and src_key: the messages row
    src_key      TEXT NOT NULL,
    run_id       INTEGER,                    -- NULL for an operator's decision (cutover skip)
    at           REAL NOT NULL,
    status       TEXT NOT NULL,              -- failed | skipped | waived
    reason       TEXT                        -- the server's words, verbatim
);

CREATE INDEX IF NOT EXISTS message_attempts_message ON message_attempts (folder_id, uidvalidity, src_key);

CREATE TABLE IF NOT EXISTS events (
    id       INTEGER PRIMARY KEY,
    ts       REAL NOT NULL,
    run_id   INTEGER,
    mailbox  TEXT,
    folder   TEXT,
    level    TEXT NOT NULL,             -- info | warning | error
    kind     TEXT NOT NULL,
    message  TEXT NOT NULL
);

-- Readiness checks: every run, each check's state, and every finding (history for diffs).
CREATE TABLE IF NOT EXISTS check_runs (
    id        INTEGER PRIMARY KEY,
    started   REAL NOT NULL,
    seconds   REAL,
    phase     TEXT NOT NULL,
    scope     TEXT NOT NULL,               -- "all", or the category / ids that were run
    complete  INTEGER NOT NULL DEFAULT 0,  -- 1 when no check ended in error
    operator  TEXT                         -- user@host who ran it
);

CREATE TABLE IF NOT EXISTS check_results (
    run_id    INTEGER NOT NULL REFERENCES check_runs(id),
    check_id  TEXT NOT NULL,
    category  TEXT NOT NULL,
    state     TEXT NOT NULL,               -- ok | error | skipped
    reason    TEXT,
    seconds   REAL,
    PRIMARY KEY (run_id, check_id)
);

CREATE TABLE IF NOT EXISTS findings (
    run_id       INTEGER NOT NULL REFERENCES check_runs(id),
    fingerprint  TEXT NOT NULL,
    check_id     TEXT NOT NULL,
    severity     TEXT NOT NULL,               -- blocker | warning | info | pass
    object_type  TEXT NOT NULL,
    object_id    TEXT NOT NULL,
    title        TEXT NOT NULL,
    observed     TEXT,
    expected     TEXT,
    evidence     TEXT,
    remediation  TEXT,
    waiver       TEXT,
    PRIMARY KEY (run_id, fingerprint)
);
-- Counts and the worst-first page of the readiness view read this index, not the findings' text.
CREATE INDEX IF NOT EXISTS findings_by_check ON findings (run_id, check_id, severity, waiver, object_id);

-- Facts the checks gathered that the engine and later checks reuse (the source survey).
CREATE TABLE IF NOT EXISTS survey (
    mailbox      TEXT NOT NULL,
    folder       TEXT NOT NULL,
    messages     INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    largest      INTEGER NOT NULL,
    surveyed     REAL NOT NULL,
    PRIMARY KEY (mailbox, folder)
);

-- Control requests for running waves (from the cockpit or `cutover control`), handled by the runner.
CREATE TABLE IF NOT EXISTS controls (
    id         INTEGER PRIMARY KEY,
    ts         REAL NOT NULL,
    wave       TEXT,                       -- the wave it applies to (NULL: every wave)
    mailbox    TEXT,                       -- one source mailbox, or NULL for the whole wave
    action     TEXT NOT NULL,              -- pause | resume | cancel
    requested_by TEXT,
    seen       REAL                        -- when a runner first acted on it
);

-- How each throttled scope (an EWS service account, a Graph mailbox) stands while a run paces its
-- requests: the back-off the service asked for and the budget used. The runner rewrites its rows every
-- few seconds; `cutover status` and the cockpit show them while the run lasts.
CREATE TABLE IF NOT EXISTS pacing (
    run_id             INTEGER NOT NULL REFERENCES runs(id),
    scope              TEXT NOT NULL,
    in_flight          INTEGER NOT NULL,
    concurrency        INTEGER,
    backoff_until      REAL,                -- epoch seconds; NULL or past: none in force
    backoff_reason     TEXT,                -- the service's words (scrubbed)
    back_offs          INTEGER NOT NULL,
    requests_in_window INTEGER NOT NULL,
    request_budget     INTEGER,
    bytes_in_window    INTEGER NOT NULL,
    byte_budget        INTEGER,
    waited_seconds     REAL NOT NULL,
    updated            REAL NOT NULL,
    PRIMARY KEY (run_id, scope)
);

-- The cutover window (#11): every step a wave took on its way from copying to switched (and later
-- settled, closed, rolled back), with what it checked, what it did, who and when. Sub-steps of the
-- switch ("switch:directory", "switch:dns-update", "switch:dns-confirmed") are rows too: an
-- interrupted switch resumes after the last one that is done.
CREATE TABLE IF NOT EXISTS wave_steps (
    id          INTEGER PRIMARY KEY,
    wave        TEXT NOT NULL,
    step        TEXT NOT NULL,              -- ready | final-pass | switched | settled | closed | rolled-back | switch:<sub-step>
    status      TEXT NOT NULL,              -- started | done | refused | failed
    started     REAL NOT NULL,
    ended       REAL,
    operator    TEXT NOT NULL,              -- the OS user
    host        TEXT NOT NULL,
    ssh_client  TEXT,                       -- address and port of the SSH client, when there is one
    params      TEXT NOT NULL DEFAULT '{}', -- JSON: the step's exact parameters (never a secret)
    checked     TEXT NOT NULL DEFAULT '[]', -- JSON: each condition with whether it held
    did         TEXT NOT NULL DEFAULT '{}'  -- JSON: what the step changed or measured
);
CREATE INDEX IF NOT EXISTS wave_steps_by_wave ON wave_steps (wave, id);

-- One operator at a time moves a wave through its window: the holder renews, a dead one's lease is
-- taken over (its pid gone on this host, or the lease expired).
CREATE TABLE IF NOT EXISTS wave_leases (
    wave     TEXT PRIMARY KEY,
    holder   TEXT NOT NULL,                 -- user@host
    host     TEXT NOT NULL,
    pid      INTEGER NOT NULL,
    taken    REAL NOT NULL,
    expires  REAL NOT NULL
);

-- The routing proxy (#14). Every login through it, as triage and the proxy view read them: written by
-- the proxy in batches (one transaction per ~100 ms), kept bounded per user, by age and in total.
-- ``user_name`` is the route's user, or the login as typed when the proxy refused before routing.
CREATE TABLE IF NOT EXISTS proxy_logins (
    id            INTEGER PRIMARY KEY,
    ts            REAL NOT NULL,
    service       TEXT NOT NULL,              -- imap | pop3 | submission | smtp
    client        TEXT NOT NULL,              -- the client's address
    login         TEXT NOT NULL,              -- as the client typed it
    user_name     TEXT NOT NULL,
    backend       TEXT,                       -- NULL: refused before routing
    backend_login TEXT,                       -- the login the route rewrote for the backend
    decided_by    TEXT,                       -- store | directory | static | default
    reason        TEXT,                       -- why the router chose the backend, in words
    outcome       TEXT NOT NULL,              -- accepted | rejected | unavailable | blocked
    detail        TEXT NOT NULL DEFAULT ''    -- the backend's words (scrubbed) or the proxy's reason
);
CREATE INDEX IF NOT EXISTS proxy_logins_by_user ON proxy_logins (user_name, id);
-- The login as typed, where it differs from the user (triage asks by either name; the user's index
-- answers the rest). Partial: most logins are typed as the user's name, and an index entry costs
-- the proxy's writer an insert and, at the cut, a delete. Queries state its condition word for word
-- (proxy_reads). Stores made before it had proxy_logins_by_login over every row: dropped here.
CREATE INDEX IF NOT EXISTS proxy_logins_by_typed_login ON proxy_logins (login) WHERE login <> user_name;
DROP INDEX IF EXISTS proxy_logins_by_login;
CREATE INDEX IF NOT EXISTS proxy_logins_by_time ON proxy_logins (ts);

-- Sessions open through each running proxy, per backend and service, rewritten every few seconds by
-- the proxy (its rows go when it stops); a row not refreshed for a while is a proxy that died.
CREATE TABLE IF NOT EXISTS proxy_sessions (
    proxy     TEXT NOT NULL,                  -- host:pid
    backend   TEXT NOT NULL,
    service   TEXT NOT NULL,
    sessions  INTEGER NOT NULL,
    updated   REAL NOT NULL,
    PRIMARY KEY (proxy, backend, service)
);

-- Passwords the proxy captured after a backend accepted them ([proxy.capture]), for a legacy platform
-- with no master account: AES-GCM ciphertext only, the key's id beside it, the user and backend bound
-- in as associated data; gone after ``expires``.
CREATE TABLE IF NOT EXISTS captured_credentials (
    user_name   TEXT NOT NULL,
    backend     TEXT NOT NULL,
    login       TEXT NOT NULL,                -- the login the backend accepted it for
    key_id      TEXT NOT NULL,
    nonce       BLOB NOT NULL,
    ciphertext  BLOB NOT NULL,
    captured    REAL NOT NULL,
    expires     REAL NOT NULL,
    PRIMARY KEY (user_name, backend)
);

-- Mailboxes of an on-login wave ([[waves]] start = "on-login") queued by their user's first login
-- through the proxy: a run of that wave copies these.
CREATE TABLE IF NOT EXISTS login_queue (
    wave      TEXT NOT NULL,
    mailbox   TEXT NOT NULL,                  -- the plan's source login
    queued    REAL NOT NULL,
    service   TEXT NOT NULL,
    client    TEXT NOT NULL,
    PRIMARY KEY (wave, mailbox)
);

-- A fleet's viewers (cockpit_bench.py, 100,000 mailboxes): the mailboxes changed since a watermark
-- (the ledger cache), the running ones most recently active, and the waves' totals summed from an
-- index a tenth of the table's width.
CREATE INDEX IF NOT EXISTS mailboxes_changed ON mailboxes (COALESCE(updated, 0), source);
CREATE INDEX IF NOT EXISTS mailboxes_active ON mailboxes (state, updated);
CREATE INDEX IF NOT EXISTS mailboxes_totals ON mailboxes (wave, state, messages_total, messages_done, bytes_done,
                                                          failed, skipped, bytes_total);

-- A fleet (#13): the mailboxes of each run, in the order runners take them; done when a runner
-- finished the mailbox for that run (ok, partial, failed, cancelled). Every runner of the fleet takes
-- the next open one (runners.state.leases), the launching process too.
CREATE TABLE IF NOT EXISTS run_mailboxes (
    run_id      INTEGER NOT NULL REFERENCES runs(id),
    mailbox_id  INTEGER NOT NULL REFERENCES mailboxes(id),
    position    INTEGER NOT NULL,
    item_retry  INTEGER NOT NULL DEFAULT 0,   -- a retry pass of a partial mailbox: only its failed items
    done        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, mailbox_id)
);
CREATE INDEX IF NOT EXISTS run_mailboxes_open ON run_mailboxes (run_id, done, position);

-- Every process that works mailboxes (`cutover run`, `cutover runner`), with its heartbeat:
-- `cutover status` lists them.
CREATE TABLE IF NOT EXISTS fleet_hosts (
    name       TEXT PRIMARY KEY,               -- hostname:pid, or the runner's --name
    host       TEXT NOT NULL,
    pid        INTEGER NOT NULL,
    started    REAL NOT NULL,
    heartbeat  REAL NOT NULL,
    state      TEXT NOT NULL                   -- working | idle | stopping | stopped
);

-- The per-server connection caps across hosts: slot N of a server is free, or held by one process
-- until its lease expires (renewed with the mailbox leases).
CREATE TABLE IF NOT EXISTS server_slots (
    server   TEXT NOT NULL,
    slot     INTEGER NOT NULL,
    holder   TEXT,
    expires  REAL,
    PRIMARY KEY (server, slot)
);

-- The cockpit's mailbox search (a substring of the source, target or state, per wave): a pass over
-- this index instead of the table's wide rows. Its columns change only with a mailbox's state, so the
-- progress updates of a running fleet never touch it.
CREATE INDEX IF NOT EXISTS mailboxes_search ON mailboxes (source, target, state, wave);

-- The cockpit's mailbox search by substring (runners.state.mailbox_search): a trigram index of every
-- mailbox's source and target, so that a search matching a few mailboxes of 100,000 reads those few
-- instead of passing over all of them. Kept by triggers on what it indexes only (a mailbox's progress
-- updates never touch it); a store made before it is indexed once, when this schema first runs on it.
CREATE VIRTUAL TABLE IF NOT EXISTS mailboxes_text USING fts5(
    source, target, content = 'mailboxes', content_rowid = 'id', tokenize = 'trigram'
);
CREATE TRIGGER IF NOT EXISTS mailboxes_text_insert AFTER INSERT ON mailboxes BEGIN
    INSERT INTO mailboxes_text (rowid, source, target) VALUES (new.id, new.source, new.target);
END;
CREATE TRIGGER IF NOT EXISTS mailboxes_text_delete AFTER DELETE ON mailboxes BEGIN
    INSERT INTO mailboxes_text (mailboxes_text, rowid, source, target)
        VALUES ('delete', old.id, old.source, old.target);
END;
CREATE TRIGGER IF NOT EXISTS mailboxes_text_update AFTER UPDATE OF source, target ON mailboxes
    WHEN old.source IS NOT new.source OR old.target IS NOT new.target BEGIN
    INSERT INTO mailboxes_text (mailboxes_text, rowid, source, target)
        VALUES ('delete', old.id, old.source, old.target);
    INSERT INTO mailboxes_text (rowid, source, target) VALUES (new.id, new.source, new.target);
END;
INSERT INTO mailboxes_text (mailboxes_text)
    SELECT 'rebuild' WHERE NOT EXISTS (SELECT 1 FROM meta WHERE key = 'mailboxes_text');
INSERT OR IGNORE INTO meta (key, value) VALUES ('mailboxes_text', 'indexed');
