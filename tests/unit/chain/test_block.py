import pytest
from factories import make_block, make_consortium, seeded_key
from hypothesis import given, settings
from hypothesis import strategies as st

from chain.block import Block, BlockError, Certificate, CertificateError, Header, commit_message, sign_commit
from chain.crypto import Domain
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
    plain = cert.to_plain()
    assert set(plain) == {"height", "view", "block_hash", "signatures"} and plain["view"] == 0
    assert Certificate.from_plain(plain) == cert
    Certificate.from_plain(plain).verify(CID, 1, block.block_hash, VSET)


def _cert(block, keys, view=0):
    sigs = {k.public: sign_commit(k, CID, 1, view, block.block_hash) for k in keys}
    return Certificate.build(1, view, block.block_hash, sigs)


def test_commit_message_names_the_view():
    block, _ = a_block()
    assert commit_message(CID, 1, 0, block.block_hash) != commit_message(CID, 1, 2, block.block_hash)
    assert Domain.COMMIT.value == b"titlechain/commit/v2\n"
    # a commit in a later view (a re-proposal) makes a certificate of its own view
    _cert(block, C.validator_keys[:3], view=5).verify(CID, 1, block.block_hash, VSET)


def test_certificate_parsing_refuses_a_missing_view_and_extra_fields():
    _, cert = a_block()
    plain = cert.to_plain()
    without_view = {k: v for k, v in plain.items() if k != "view"}  # the version-1 shape
    for bad in (without_view, {**plain, "views": [0]}, {**plain, "view": -1}, {**plain, "view": True},
                {**plain, "view": "0"}, {**plain, "height": -1}):
        with pytest.raises(CertificateError):
            Certificate.from_plain(bad)
    for entry in ({"validator": 1, "sig": "00"}, {"validator": "00", "sig": ["x"]}, {"validator": "00"}):
        with pytest.raises(CertificateError):
            Certificate.from_plain({**plain, "signatures": [entry]})


def test_commits_of_different_views_never_make_one_certificate():
    """n = 4: two commits in view 0 and one in view 1 are a quorum in no view."""
    block, _ = a_block()
    bh = block.block_hash
    k0, k1, k2, _ = C.validator_keys
    sigs = {k0.public: sign_commit(k0, CID, 1, 0, bh), k1.public: sign_commit(k1, CID, 1, 0, bh),
            k2.public: sign_commit(k2, CID, 1, 1, bh)}
    for view in (0, 1):
        with pytest.raises(CertificateError, match=f"not its commit to this block in view {view}"):
            Certificate.build(1, view, bh, sigs).verify(CID, 1, bh, VSET)


def test_certificate_refusals():
    block, cert = a_block()
    bh = block.block_hash
    with pytest.raises(CertificateError, match="quorum"):
        _cert(block, C.validator_keys[:2]).verify(CID, 1, bh, VSET)  # 2f signatures
    dup = Certificate(1, 0, bh, cert.signatures + cert.signatures[:1])
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
    wrong = Certificate(1, 0, bh, ((k.public, sign_commit(k, CID, 2, 0, bh)),) + cert.signatures[1:])
    with pytest.raises(CertificateError, match="bad signature"):
        wrong.verify(CID, 1, bh, VSET)
    # nor one for another view, nor does renaming the certificate's view rescue the others
    other_view = Certificate(1, 0, bh, ((k.public, sign_commit(k, CID, 1, 1, bh)),) + cert.signatures[1:])
    with pytest.raises(CertificateError, match="bad signature"):
        other_view.verify(CID, 1, bh, VSET)
    with pytest.raises(CertificateError, match="bad signature"):
        Certificate(1, 1, bh, cert.signatures).verify(CID, 1, bh, VSET)


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
