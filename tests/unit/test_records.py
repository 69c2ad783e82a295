import pytest

from services.common.records import Device, NodeRecord, SelfUpdate, ServedModel, apply_update
from services.common.records_proto import record_from_proto, record_to_proto, update_from_proto, update_to_proto

RECORD = NodeRecord(node_id="n1", name="box", version=3)


def test_update_bumps_version_only_on_change() -> None:
    served = (ServedModel("m", "/m.gguf", "ready", port=1234),)
    updated = apply_update(RECORD, SelfUpdate(frozenset({"served"}), {"served": served}), now=10.0)
    assert updated.served == served and updated.version == 4 and updated.updated_at == 10.0
    again = apply_update(updated, SelfUpdate(frozenset({"served"}), {"served": served}), now=11.0)
    assert again is updated


def test_update_refuses_fields_it_does_not_own() -> None:
    with pytest.raises(ValueError, match="node_id"):
        apply_update(RECORD, SelfUpdate(frozenset({"node_id"}), {"node_id": "x"}), now=0.0)


def test_record_and_update_survive_protobuf() -> None:
    record = NodeRecord(
        node_id="n1", name="box", role="serving", memory_offered_bytes=7, served=(ServedModel("m", "/m.gguf", "failed", 1, 2, "boom", 3.5, 9),), version=2
    )
    assert record_from_proto(record_to_proto(record)) == record
    update = SelfUpdate(frozenset({"role", "served"}), {"role": "serving", "served": record.served})
    assert update_from_proto(update_to_proto(update)) == update


def test_devices_survive_protobuf_in_the_record_and_in_an_update() -> None:
    card = Device("CUDA0", "NVIDIA H200", 143156 * 1024**2, 142517 * 1024**2)
    record = NodeRecord(node_id="n1", name="box", memory_offered_bytes=card.total_bytes, devices=(card, Device("CUDA1", "NVIDIA H200", 1, 0)))
    assert record_from_proto(record_to_proto(record)) == record
    update = SelfUpdate(frozenset({"devices", "memory_offered_bytes"}), {"devices": record.devices, "memory_offered_bytes": card.total_bytes})
    assert update_from_proto(update_to_proto(update)) == update
    assert apply_update(RECORD, update, now=1.0).devices == record.devices


def test_a_splits_tls_survives_protobuf_in_the_record_and_in_an_update() -> None:
    from services.common.records import Assignment, Mode, ProcessKind

    plan = Assignment("m", Mode.SPLIT_HOST, "split", "n1", ("n2",), (10, 10), rpc_key="ab" * 32)
    rpc = ServedModel("m", "/m.gguf", "ready", 5000, kind=ProcessKind.RPC_SERVER, host="10.0.0.2")
    record = NodeRecord(node_id="n1", name="box", assignments=(plan,), served=(rpc,), rpc_tls=True)
    assert record_from_proto(record_to_proto(record)) == record
    update = SelfUpdate(frozenset({"rpc_tls", "assignments", "served"}), {"rpc_tls": True, "assignments": (plan,), "served": (rpc,)})
    assert update_from_proto(update_to_proto(update)) == update
    assert apply_update(RECORD, update, now=1.0).rpc_tls is True
    assert "ab" * 32 not in repr(plan)  # logs that print an assignment never print its key
