"""Validator-to-validator networking: frame codec, sealed links (handshake, link encryption,
replay guard), the transport that keeps one link per peer, and the non-consensus messages
(tx gossip, blocks, catch-up).
"""
