"""The wire: signing keys and DSSE envelopes, the snapshot and record codecs, the receipt,
acceptance rules and their rejections, key rotation (keyring), and the gRPC client."""
