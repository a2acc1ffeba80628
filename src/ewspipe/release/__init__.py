"""Development/production sync: staging validation cycle, gates, semantic versions, release
ledger, hotfix with back-port, rollback (ADR 024 in shared/seed; DOMAIN.md section 8)."""
