-- A state store as the version before opaque target ids wrote it (commit 1245e6f, StateStore with
-- INTEGER target_uid / floor_uid): one folder, a copied, a failed and a pending message. sqlite3 .dump
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO meta VALUES('schema','1');
CREATE TABLE runs (
    id        INTEGER PRIMARY KEY,
    wave      TEXT NOT NULL,
    kind      TEXT NOT NULL,            -- full | delta
    started   REAL NOT NULL,
    ended     REAL,
    status    TEXT NOT NULL,            -- running | ok | partial | failed | interrupted
    pid       INTEGER,
    host      TEXT,
    workers   INTEGER,
    summary   TEXT                      -- JSON, written at the end
);
CREATE TABLE mailboxes (
    id             INTEGER PRIMARY KEY,
    source         TEXT NOT NULL UNIQUE,
    target         TEXT NOT NULL,
    wave           TEXT NOT NULL,
    state          TEXT NOT NULL DEFAULT 'pending',   -- pending | running | ok | partial | failed
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
    error_kind     TEXT
);
INSERT INTO mailboxes VALUES(1,'alice','alice','pilot','pending',NULL,NULL,NULL,NULL,NULL,0,0,0,0,0,0,NULL,NULL,NULL);
CREATE TABLE folders (
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
INSERT INTO folders VALUES(1,1,'INBOX','INBOX','INBOX',NULL,NULL,NULL,NULL,NULL,NULL,NULL,1796551859.2391262054);
CREATE TABLE messages (
    folder_id     INTEGER NOT NULL REFERENCES folders(id),
    uidvalidity   INTEGER NOT NULL,
    src_key       TEXT NOT NULL,
    src_uid       INTEGER NOT NULL,
    size          INTEGER NOT NULL,
    internaldate  TEXT,
    flags         TEXT NOT NULL DEFAULT '',
    sha256        BLOB,
    target_name   TEXT,
    target_uid    INTEGER,
    status        TEXT NOT NULL,
    reason        TEXT,
    floor_uid     INTEGER,                 -- target UIDNEXT before the APPEND (pending only)
    attempts      INTEGER NOT NULL DEFAULT 0,
    run_id        INTEGER,
    updated       REAL,
    PRIMARY KEY (folder_id, uidvalidity, src_key)
) WITHOUT ROWID;
INSERT INTO messages VALUES(1,5,'1',1,100,NULL,'\Seen',X'6161616161616161616161616161616161616161616161616161616161616161','INBOX',40,'copied',NULL,NULL,1,1,1796551859.2472913265);
INSERT INTO messages VALUES(1,5,'2',2,200,NULL,'',X'6262626262626262626262626262626262626262626262626262626262626262','INBOX',NULL,'pending',NULL,41,1,1,1796551859.2430624961);
INSERT INTO messages VALUES(1,5,'3',3,300,NULL,'',X'6363636363636363636363636363636363636363636363636363636363636363','INBOX',NULL,'failed','NO [LIMIT] too big',NULL,1,1,1796551859.2472913265);
CREATE TABLE message_attempts (
    id           INTEGER PRIMARY KEY,
    folder_id    INTEGER NOT NULL REFERENCES folders(id),
    uidvalidity  INTEGER NOT NULL,           -- with folder_id and src_key: the messages row
    src_key      TEXT NOT NULL,
    run_id       INTEGER,                    -- NULL for an operator's decision (cutover skip)
    at           REAL NOT NULL,
    status       TEXT NOT NULL,              -- failed | skipped | waived
    reason       TEXT                        -- the server's words, verbatim
);
INSERT INTO message_attempts VALUES(1,1,5,'3',1,1796551859.2472913265,'failed','NO [LIMIT] too big');
CREATE TABLE events (
    id       INTEGER PRIMARY KEY,
    ts       REAL NOT NULL,
    run_id   INTEGER,
    mailbox  TEXT,
    folder   TEXT,
    level    TEXT NOT NULL,             -- info | warning | error
    kind     TEXT NOT NULL,
    message  TEXT NOT NULL
);
CREATE TABLE check_runs (
    id        INTEGER PRIMARY KEY,
    started   REAL NOT NULL,
    seconds   REAL,
    phase     TEXT NOT NULL,
    scope     TEXT NOT NULL,               -- "all", or the category / ids that were run
    complete  INTEGER NOT NULL DEFAULT 0   -- 1 when no check ended in error
);
CREATE TABLE check_results (
    run_id    INTEGER NOT NULL REFERENCES check_runs(id),
    check_id  TEXT NOT NULL,
    category  TEXT NOT NULL,
    state     TEXT NOT NULL,               -- ok | error | skipped
    reason    TEXT,
    seconds   REAL,
    PRIMARY KEY (run_id, check_id)
);
CREATE TABLE findings (
    run_id       INTEGER NOT NULL REFERENCES check_runs(id),
    fingerprint  TEXT NOT NULL,
    check_id     TEXT NOT NULL,
    severity     TEXT NOT NULL,
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
CREATE TABLE survey (
    mailbox      TEXT NOT NULL,
    folder       TEXT NOT NULL,
    messages     INTEGER NOT NULL,
    bytes        INTEGER NOT NULL,
    largest      INTEGER NOT NULL,
    surveyed     REAL NOT NULL,
    PRIMARY KEY (mailbox, folder)
);
CREATE TABLE controls (
    id         INTEGER PRIMARY KEY,
    ts         REAL NOT NULL,
    wave       TEXT,                       -- the wave it applies to (NULL: every wave)
    mailbox    TEXT,                       -- one source mailbox, or NULL for the whole wave
    action     TEXT NOT NULL,              -- pause | resume | cancel
    requested_by TEXT,
    seen       REAL                        -- when a runner first acted on it
);
CREATE INDEX messages_status ON messages (status, folder_id);
CREATE INDEX message_attempts_message ON message_attempts (folder_id, uidvalidity, src_key);
COMMIT;
