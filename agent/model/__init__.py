"""What every part of invsync shares: the certificate record, the facts sources tell about
certificates, findings, acknowledgements, declared profiles and the verified snapshot types.
Imports nothing above the foundation (`invsync.agent.errors`, `times`, `files`, `tomlconf`)."""
