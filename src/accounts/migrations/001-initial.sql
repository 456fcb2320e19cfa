-- mailseal schema v1. Postfix (sqlite: maps) and Dovecot (driver = sqlite passdb/userdb) read
-- these tables directly; `mailseal config postfix|dovecot` prints the queries.
CREATE TABLE domains (
  name       TEXT PRIMARY KEY CHECK (name = lower(name)),
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE TABLE users (
  address    TEXT PRIMARY KEY CHECK (address = lower(address)), -- also the IMAP/SASL login
  domain     TEXT NOT NULL REFERENCES domains(name),
  password   TEXT NOT NULL,            -- "{ARGON2ID}$argon2id$v=19$m=...,t=...,p=1$salt$hash"
  home       TEXT NOT NULL,            -- absolute; Maildir at <home>/Maildir
  curve      TEXT NOT NULL DEFAULT 'secp521r1',
  key_id     TEXT,                     -- active user key id (the dict is the authority)
  enabled    INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
  updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
CREATE TABLE aliases (
  source      TEXT NOT NULL CHECK (source = lower(source)),
  destination TEXT NOT NULL,
  PRIMARY KEY (source, destination)
);
-- Escrow copy of the user private key, sealed with a key derived from the recovery code.
CREATE TABLE recovery (
  address    TEXT PRIMARY KEY REFERENCES users(address) ON DELETE CASCADE,
  key_id     TEXT NOT NULL,
  kdf        TEXT NOT NULL,            -- e.g. "argon2id13:ops=3:mem=268435456"
  salt       BLOB NOT NULL,
  nonce      BLOB NOT NULL,
  box        BLOB NOT NULL,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
-- Key events; never secrets.
CREATE TABLE audit (
  id      INTEGER PRIMARY KEY,
  at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
  address TEXT,
  event   TEXT NOT NULL,
  detail  TEXT
);
