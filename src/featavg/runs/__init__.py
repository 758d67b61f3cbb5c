"""The run store: one door for every cached thing featavg computes.

Experiment runs, trained models, probes and sweep cells all live in content-addressed
directories under a runs root, and all go through the same protocol: identity, inspect,
refuse or replace, claim, compute, stage, manifest, serve the hit. The pieces:

* :mod:`.identity`: the directory of a config (``<root>/<kind>-<hash>``);
* :mod:`.files`: atomic writes and untrusting reads; :mod:`.staging`: whole directories
  staged and renamed into place, and their manifests; :mod:`.provenance`;
* :mod:`.state`: what a directory holds and whether a run may replace it;
* :mod:`.lock`: one process at a time computes a directory; :mod:`.paths`: output paths
  checked before any compute; :mod:`.guards`: resource estimates refused before they run;
  :mod:`.lifeline`: pool workers that die with their parent.

Importing this package does not import torch.
"""

from featavg.runs.context import RunContext, open_context
from featavg.runs.files import (
    MAX_JSON_BYTES,
    is_plain_name,
    open_regular,
    read_json_object,
    read_regular,
    sha256_file,
    write_bytes,
    write_csv,
    write_figure,
    write_json,
)
from featavg.runs.identity import (
    DEFAULT_ROOT,
    config_hash,
    fingerprint_tree,
    run_dir,
    source_fingerprint,
)
from featavg.runs.provenance import git_commit, provenance
from featavg.runs.staging import (
    MANIFEST,
    STAGING,
    clean_leftovers,
    run_token,
    staged_dir,
    write_manifest,
    write_run_files,
)
from featavg.runs.state import cached_summary

__all__ = [
    "RunContext",
    "DEFAULT_ROOT",
    "MANIFEST",
    "MAX_JSON_BYTES",
    "STAGING",
    "cached_summary",
    "clean_leftovers",
    "config_hash",
    "fingerprint_tree",
    "git_commit",
    "is_plain_name",
    "open_context",
    "open_regular",
    "provenance",
    "read_json_object",
    "read_regular",
    "run_dir",
    "run_token",
    "sha256_file",
    "source_fingerprint",
    "staged_dir",
    "write_bytes",
    "write_csv",
    "write_figure",
    "write_json",
    "write_manifest",
    "write_run_files",
]
