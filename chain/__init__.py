"""titlechain's data layer: encoding, crypto, transactions, blocks, genesis, storage.

Nothing in this package knows about asyncio or the network; an auditor's tool needs only
this package and `contracts`.
"""
