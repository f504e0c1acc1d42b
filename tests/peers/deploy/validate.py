# tests/peers/deploy/validate.py: offline schema check of Kubernetes manifests for tests/it/deploy.rs.
#
# Usage: validate.py VERSION... -- FILE...
# Prints one JSON object per line for every resource of every FILE (and, for built-in kinds, every
# Kubernetes VERSION): {"file", "kind", "name", "checker", "version", "ok", "error"}. Exit 0 after
# printing, whatever the verdicts: the Rust test reads them and asserts.
#
# Built-in kinds go to kubernetes-validate's strict schemas (unknown fields are errors). A kind it
# has no schema for is reported as a failure here, not the warning its command line prints and
# passes with, so nothing is ever silently unchecked. ServiceMonitor (monitoring.coreos.com/v1)
# goes to the pydantic models cloudcoil generates from prometheus-operator's CRDs; they ignore
# unknown fields, so a field the model dropped in a round trip is reported as unknown.
import importlib.metadata
import json
import sys

import kubernetes_validate
import kubernetes_validate.utils as kv_utils
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_operator_v1

CRD_MODELS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): prometheus_operator_v1.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PodMonitor"): prometheus_operator_v1.PodMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): prometheus_operator_v1.PrometheusRule,
}
CRD_CHECKER = "cloudcoil.models.prometheus_operator " + importlib.metadata.version(
    "cloudcoil.models.prometheus_operator"
)


def first_dropped(given, kept, path):
    """The path of the first key in `given` that the model round trip lost, or None."""
    if isinstance(given, dict):
        if not isinstance(kept, dict):
            return path or "."
        for key, value in given.items():
            if key not in kept:
                return f"{path}.{key}" if path else key
            found = first_dropped(value, kept[key], f"{path}.{key}" if path else key)
            if found:
                return found
    elif isinstance(given, list):
        if not isinstance(kept, list) or len(kept) != len(given):
            return path or "."
        for index, (value, kept_value) in enumerate(zip(given, kept)):
            found = first_dropped(value, kept_value, f"{path}.{index}")
            if found:
                return found
    return None


def check_crd(model, doc):
    try:
        parsed = model.model_validate(doc)
    except Exception as error:  # pydantic.ValidationError: one line per problem
        return " ".join(str(error).split())
    kept = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    dropped = first_dropped(doc, kept, "")
    if dropped:
        return f"{dropped}: unknown field (not in the CRD)"
    return None


def main(argv):
    if "--" not in argv:
        sys.exit("usage: validate.py VERSION... -- FILE...")
    split = argv.index("--")
    versions, files = argv[:split], argv[split + 1 :]
    for path in files:
        with open(path, encoding="utf-8") as handle:
            docs = [doc for doc in yaml.safe_load_all(handle) if doc]
        for doc in docs:
            kind = doc.get("kind", "")
            api_version = doc.get("apiVersion", "")
            name = (doc.get("metadata") or {}).get("name", "")
            base = {"file": path, "kind": kind, "name": name}
            model = CRD_MODELS.get((api_version, kind))
            if model is not None:
                error = check_crd(model, doc)
                print(json.dumps({**base, "checker": CRD_CHECKER, "version": None,
                                  "ok": error is None, "error": error}))
                continue
            for version in versions:
                error = None
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                except kv_utils.ValidationError as caught:
                    where = ".".join(str(item) for item in caught.path)
                    error = f"{where}: {caught.message}"
                except kv_utils.SchemaNotFoundError as caught:
                    error = caught.message
                print(json.dumps({**base, "checker": "kubernetes-validate "
                                  + kubernetes_validate.__version__, "version": version,
                                  "ok": error is None, "error": error}))


if __name__ == "__main__":
    main(sys.argv[1:])
