-- mailseal schema v2: the journal of credential changes (password change, recovery, reset,
-- user-key rotation). A change touches two stores that cannot commit together, SQLite and the
-- user's dovecot-attributes dict, so it is written here first, then to the dict, then applied
-- here; a change cut off half-way is finished or undone by the next command on that user
-- (src/accounts/journal.ts). While a row exists, Dovecot's second passdb also accepts
-- `password`, so the user logs in with the old or the new password at every step.
CREATE TABLE pending (
  address      TEXT PRIMARY KEY REFERENCES users(address) ON DELETE CASCADE,
  token        TEXT NOT NULL,          -- random id of the run that started the change
  kind         TEXT NOT NULL,          -- passwd | recover | reset | rotate
  password     TEXT,                   -- new {ARGON2ID} hash; NULL if the password stays
  key_id       TEXT NOT NULL,          -- active user key id once the change is done
  marker       TEXT NOT NULL,          -- SHA-256 of the new private string of that key in the dict
  old_key_id   TEXT NOT NULL,          -- active user key id before the change
  old_marker   TEXT NOT NULL,          -- SHA-256 of its private string before the change
  escrow_kdf   TEXT,                   -- new recovery escrow (NULL: unchanged)
  escrow_salt  BLOB,
  escrow_nonce BLOB,
  escrow_box   BLOB,
  started_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
