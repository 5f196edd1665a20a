"""invsync: cross-organization CA certificate inventory sync.

`invsync.agent` (folder agent/), `invsync.server` (folder server/) and the generated wire code
`invsync.v1` (protos/invsync/v1) are its packages; see docs/architecture.md."""
