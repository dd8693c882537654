"""The protocol's limits, one table: every node of a chain must apply the same, or they would
disagree about which txs, blocks and frames are valid (docs/protocol.md states each). A limit
that a genesis may set (max_block_txs, max_block_bytes, the view timeouts) is a field of
chain.genesis.Params, with its default there; what is here no genesis can change.
"""

from __future__ import annotations

# -- transactions (chain/tx.py) -------------------------------------------------------------------
MAX_TX_BYTES = 8 * 1024  # one tx, canonically encoded
MAX_CHAIN_ID_LEN = 64
MAX_NONCE_LEN = 128
EXPIRY_WINDOW = 10_000  # heights a tx's `expires` may lie beyond the next height

# -- frames and blocks ----------------------------------------------------------------------------
MAX_FRAME_BYTES = 16 * 1024 * 1024  # one peer frame's plaintext (node/p2p/framing.py)
# A block travels in one peer frame as a push, a fetch answer or a sync answer with its
# certificate: its txs may take all but 1 MiB of it, left for the header, the certificate and the
# envelopes. A larger block could be certified and then never sent again.
MAX_BLOCK_BYTES_LIMIT = MAX_FRAME_BYTES - 1024 * 1024  # the most a genesis may set max_block_bytes to
MAX_CERTIFICATE_SIGNATURES = 1024  # bounds a parsed certificate; far above any validator set

# -- numbers ------------------------------------------------------------------------------------
MAX_HEIGHT = 2**63 - 1  # the largest height or view a message, a record or a request may name

# -- roles ----------------------------------------------------------------------------------------
MAX_CLASSES = 64  # asset classes one issuer grant may name (ceremony requests, role-granting txs)
