"""The identity hash of each task kind (SPEC §1): MurmurHash3 x64 128-bit, seed 0, little-endian hex."""

import mmh3

from katsched.core.models import BoefjeTask, NormalizerTask, ReportTask, TaskPayload


def murmur_hex(key: str) -> str:
    return bytes(mmh3.hash_bytes(key.encode("utf-8"))).hex()


def identity_key(payload: TaskPayload) -> str:
    match payload:
        case BoefjeTask(input_ooi=str(ooi)) if ooi:
            return f"{ooi}-{payload.boefje.id}-{payload.organization}"
        case BoefjeTask():
            return f"{payload.boefje.id}-{payload.organization}"
        case NormalizerTask():
            meta = payload.raw_data.boefje_meta
            return f"{payload.normalizer.id}-{meta.id}-{meta.organization}"
        case ReportTask():
            return f"{payload.report_recipe_id}-{payload.organisation_id}"


def task_hash(payload: TaskPayload) -> str:
    return murmur_hex(identity_key(payload))
