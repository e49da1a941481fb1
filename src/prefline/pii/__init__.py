"""Personal data at ingest: find it with Presidio's pattern recognisers and redact, hash,
refuse or keep it per source (docs/privacy.md, "PII redaction")."""
