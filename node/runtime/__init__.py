"""The validator process: the asyncio driver of the consensus core (`Validator`), the ledger
adapter over the store, the mempool, configuration, metrics, logs and the evidence store.
"""
