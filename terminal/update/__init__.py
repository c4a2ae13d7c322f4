"""Software updates (docs/protocol/updates.md): TUF-verified release bundles, staged rollouts,
releases installed side by side under a prefix, a health window and rollback by the launcher."""
