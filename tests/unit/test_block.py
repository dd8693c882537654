import pytest
from factories import make_block, make_consortium, seeded_key
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.block import Block, BlockError, Certificate, CertificateError, Header, sign_commit
from chain.encoding import canonical
from chain.merkle import EMPTY_ROOT, merkle_root, tx_root
from chain.tx import sign_tx

C = make_consortium(4)
CID = C.genesis.chain_id
VSET = C.genesis.validators


def a_block():
    tx = sign_tx(C.issuer, chain_id=CID, op="asset.register", args={"asset_id": "x"}, expires=10)
    return make_block(C, 1, C.genesis.hash, [tx])


def test_quorum_sizes():
    from chain.validators import ValidatorSet

    for n, q in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 4), (6, 4), (7, 5), (10, 7)]:
        vs = make_consortium(n).genesis.validators
        assert isinstance(vs, ValidatorSet)
        assert vs.quorum == q, n
        # any two quorums intersect in more than f validators
        assert 2 * vs.quorum - vs.n > vs.f


def test_block_round_trip_and_tx_root():
    block, _ = a_block()
    again = Block.decode(block.encode())
    assert again.block_hash == block.block_hash
    again.check_tx_root()
    forged = Block(block.header, ())
    with pytest.raises(BlockError, match="tx_root"):
        forged.check_tx_root()


def test_header_refuses_bad_fields():
    block, _ = a_block()
    plain = block.header.to_plain()
    for field, value in [("height", 0), ("prev_hash", "xx"), ("view", -1), ("chain_id", ""), ("proposer", 1)]:
        with pytest.raises(BlockError):
            Header.from_plain({**plain, field: value})
    with pytest.raises(BlockError):
        Header.from_plain({**plain, "extra": 1})


def test_certificate_valid():
    block, cert = a_block()
    cert.verify(CID, 1, block.block_hash, VSET)
    Certificate.from_plain(cert.to_plain()).verify(CID, 1, block.block_hash, VSET)


def _cert(block, keys):
    return Certificate.build(1, block.block_hash, {k.public: sign_commit(k, CID, 1, block.block_hash) for k in keys})


def test_certificate_refusals():
    block, cert = a_block()
    bh = block.block_hash
    with pytest.raises(CertificateError, match="quorum"):
        _cert(block, C.validator_keys[:2]).verify(CID, 1, bh, VSET)  # 2f signatures
    dup = Certificate(1, bh, cert.signatures + cert.signatures[:1])
    with pytest.raises(CertificateError, match="twice"):
        dup.verify(CID, 1, bh, VSET)
    outsider = seeded_key("outsider")
    with pytest.raises(CertificateError, match="not a validator"):
        _cert(block, C.validator_keys[:2] + [outsider]).verify(CID, 1, bh, VSET)
    with pytest.raises(CertificateError, match="height"):
        cert.verify(CID, 2, bh, VSET)
    with pytest.raises(CertificateError, match="another block"):
        cert.verify(CID, 1, "00" * 32, VSET)
    with pytest.raises(CertificateError, match="bad signature"):
        cert.verify("other-chain", 1, bh, VSET)
    # a signature for another height does not count at this one
    k = C.validator_keys[0]
    wrong = Certificate(1, bh, ((k.public, sign_commit(k, CID, 2, bh)),) + cert.signatures[1:])
    with pytest.raises(CertificateError, match="bad signature"):
        wrong.verify(CID, 1, bh, VSET)


def test_merkle_roots_distinguish_lists():
    a, b, c = (bytes([i]) * 32 for i in range(3))
    assert merkle_root([]) == EMPTY_ROOT
    roots = {merkle_root(x) for x in [[a], [a, b], [b, a], [a, b, c], [a, b, c, c], [a, a]]}
    assert len(roots) == 6
    assert tx_root([a.hex(), b.hex()]) == merkle_root([a, b])


@settings(max_examples=60, deadline=None)
@given(
    n_txs=st.integers(min_value=0, max_value=40),
    args=st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=30), st.integers(-(2**63), 2**64 - 1), st.booleans(), st.none()), max_size=5),
)
def test_block_and_tx_encodings_built_from_parts_equal_canonical(n_txs: int, args: dict) -> None:
    c = make_consortium(4)
    user = seeded_key("enc-user")
    txs = [sign_tx(user, chain_id="test-chain", op="asset.transfer", args={**args, "i": i}, expires=9, nonce=f"n{i}") for i in range(n_txs)]
    for tx in txs:
        assert tx.encode() == canonical(tx.to_plain())
    block, _ = make_block(c, 1, c.genesis.hash, txs)
    assert block.encode() == canonical(block.to_plain())
    assert Block.decode(block.encode()) == block
