"""Re-vendor upstream truth from the upstream repositories at the versions pinned in `pins.yaml`.

For every chart: `Chart.yaml`, `values.yaml`, `values.schema.json` (when the chart ships one) and
the evidence that its version is published (`published.json`); for every CRD file: the
`openAPIV3Schema` of each served version (`crds/<group>/<plural>.json`); for every repository:
its LICENSE. Each folder gets a `SOURCES.yaml` naming repository, ref, commit, path and sha256.
A CRD that upstream ships only as a JSON schema (`adapter` in pins.yaml) is converted back to its
openAPIV3Schema by `_datree_schema`; a CRD the cloud serves itself (`provided_by`) is marked so in
`crds/INDEX.json`.

    python components/upstream/refresh.py                    # clone from github.com (needs network)
    python components/upstream/refresh.py --mirror DIR       # read git mirrors DIR/<owner>+<name>/repo
    python components/upstream/refresh.py --check [--mirror DIR]   # exit 1 if anything would change

Nothing here is edited by hand: change `pins.yaml` and run this script.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
PINS = HERE / "pins.yaml"
GENERATED = ("charts", "crds", "manifests", "LICENSES")
_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader


class Repo:
    """Read-only access to one upstream git repository (a local mirror or a blobless clone)."""

    def __init__(self, name: str, mirror: Path | None, cache: Path) -> None:
        self.name = name
        if mirror is not None:
            self.git_dir = mirror / name.replace("/", "+") / "repo"
            if not self.git_dir.is_dir():
                raise SystemExit(f"no mirror of {name} at {self.git_dir}")
        else:
            self.git_dir = cache / name.replace("/", "+")
            if not self.git_dir.is_dir():
                url = f"https://github.com/{name}.git"
                subprocess.run(["git", "clone", "--bare", "--filter=blob:none", url, str(self.git_dir)], check=True)
                subprocess.run(
                    ["git", "-C", str(self.git_dir), "fetch", "origin", "+refs/heads/gh-pages:refs/heads/gh-pages"],
                    check=False,
                )

    def _git(self, *args: str) -> bytes:
        return subprocess.run(["git", "--git-dir", str(self.git_dir), *args], check=True, capture_output=True).stdout

    def commit(self, ref: str) -> str:
        return self._git("rev-parse", f"{ref}^{{commit}}").decode().strip()

    def show(self, ref: str, path: str) -> bytes:
        """The file at `ref:path`, following symbolic links inside the repository."""
        entry = self._git("ls-tree", ref, "--", path).decode().split()
        if not entry:
            raise SystemExit(f"{self.name}: no {path} at {ref}")
        data = self._git("cat-file", "blob", entry[2]) if entry[0] != "120000" else b""
        if entry[0] == "120000":
            target = self._git("cat-file", "blob", entry[2]).decode().strip()
            return self.show(ref, os.path.normpath(os.path.join(os.path.dirname(path), target)))
        return data

    def exists(self, ref: str, path: str) -> bool:
        return bool(self._git("ls-tree", "--name-only", ref, "--", path).strip())

    def ls(self, ref: str, path: str) -> list[str]:
        return self._git("ls-tree", "--name-only", f"{ref}:{path}").decode().split()

    def values_refs(self, ref: str, path: str) -> list[str]:
        """Every `.Values.a.b` path the chart's templates read (keys a chart uses without a
        default in values.yaml, e.g. commented-out examples)."""
        done = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.git_dir),
                "grep",
                "-h",
                "-o",
                "-E",
                r"\.Values(\.[A-Za-z0-9_]+)+",
                ref,
                "--",
                path,
            ],
            capture_output=True,
        )
        if done.returncode not in (0, 1):
            raise SystemExit(f"{self.name}: git grep failed at {ref}:{path}: {done.stderr.decode()}")
        return sorted({line.split(".Values.", 1)[1] for line in done.stdout.decode().split()})

    def tags(self) -> list[str]:
        return self._git("tag").decode().split()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _semver_key(v: str) -> tuple[tuple[int, ...], str]:
    """Release versions in order; pre-releases (`-rc.1`) sort by their release, then by name."""
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", v)
    return (tuple(int(x) for x in m.groups()) if m else (0, 0, 0)), v


def _published(
    chart: str, pin: dict[str, Any], repo: Repo, repo_of: Any = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(published.json, its SOURCES entry): every version the chart's repository offers."""
    how = pin["published"]
    if "index" in how:
        ref, path = how["index"].split(":", 1)
        index = yaml.load(repo.show(ref, path), Loader=_Loader)
        entries = index.get("entries", {}).get(chart, [])
        versions = sorted({str(e["version"]) for e in entries}, key=_semver_key)
        kind, detail = "index", {"url": pin["repo"].rstrip("/") + "/index.yaml"}
        digest = {str(e["version"]): e.get("digest") for e in entries}.get(str(pin["version"]))
        if digest:
            detail["digest"] = digest
    elif "packages" in how:
        ref, path = how["packages"].split(":", 1)
        names = repo.ls(ref, path)
        versions = sorted(
            {m.group(1) for n in names if (m := re.match(rf"^{re.escape(chart)}-(.+)\.tgz$", n))}, key=_semver_key
        )
        kind, detail = "packages", {"note": f"`helm repo index {path}` is run at publish time over these packages"}
    elif how.get("release_tag"):
        ref, path = pin["ref"], f"refs/tags/{chart}-*"
        versions = sorted(
            {
                t[len(chart) + 1 :]
                for t in repo.tags()
                if t.startswith(f"{chart}-") and _SEMVER.match(t[len(chart) + 1 :])
            },
            key=_semver_key,
        )
        kind, detail = "release_tag", {"note": "chart-releaser tags `<chart>-<version>` when it publishes"}
    elif "release_builder" in how:
        # Istio: its charts carry a placeholder version; istio/release-builder stamps the release's
        # version into Chart.yaml (`chartFile.Version = manifest.Version`) and publishes the charts it
        # lists in `repoHelmCharts` to the chart repository, once per release tag of the source.
        builder = repo_of(how["release_builder"]["source"])
        ref, path = how["release_builder"]["ref"], how["release_builder"]["path"]
        code = builder.show(ref, path).decode()
        listed = re.search(r"repoHelmCharts\s*=\s*\[\]string\{([^}]*)\}", code)
        if (
            not listed
            or f'"{pin["path"]}"' not in listed.group(1)
            or "chartFile.Version = manifest.Version" not in code
        ):
            raise SystemExit(
                f"{chart}: {builder.name} {path} at {ref} does not publish {pin['path']} at the tag's version"
            )
        versions = sorted({t for t in repo.tags() if _SEMVER.match(t)}, key=_semver_key)
        versions = [v for v in versions if _semver_key(v) <= _semver_key(str(pin["version"]))][-40:]
        kind, detail = (
            "release_builder",
            {
                "note": f"{builder.name} {path} stamps each release tag's version into {pin['path']}/Chart.yaml "
                "and publishes it (repoHelmCharts)"
            },
        )
        repo = builder
    elif "oci" in how:
        ref, path = pin["ref"], how["oci"]
        script = repo.show(ref, path).decode()
        if not re.search(r"(helm|HELM}?) package[^\n]*--version", script):
            raise SystemExit(f"{chart}: {path} at {ref} does not `helm package --version`")
        versions = sorted({t.lstrip("v") for t in repo.tags() if _SEMVER.match(t)}, key=_semver_key)
        versions = [v for v in versions if _semver_key(v) <= _semver_key(str(pin["version"]))][-40:]
        kind, detail = "oci", {"note": f"{path} packages the chart folder at tag v<version> as <version> and pushes it"}
    else:
        raise SystemExit(f"{chart}: unknown `published` {how}")
    doc = {"chart": chart, "repo": pin["repo"], "kind": kind, "versions": versions, **detail}
    commit = repo.commit(ref)
    src = {"file": "published.json", "repository": repo.name, "ref": ref, "commit": commit, "path": path}
    return doc, src


def _crd_docs(data: bytes) -> list[dict[str, Any]]:
    out = []
    for doc in yaml.load_all(data, Loader=_Loader):
        if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
            out.append(doc)
    return out


def _datree_schema(doc: Any, where: str = "") -> Any:
    """The openAPIV3Schema a datreeio/CRDs-catalog JSON schema was converted from: its converter
    (Utilities/openapi2jsonschema.py) adds `additionalProperties: false` to every object schema,
    which a structural CRD schema cannot carry, so every one of them is removed. Any other artefact
    of that converter (int-or-string turned into `oneOf`, nullable fields given a `null` type) is
    refused rather than guessed back."""
    if isinstance(doc, list):
        return [_datree_schema(v, f"{where}[{i}]") for i, v in enumerate(doc)]
    if not isinstance(doc, dict):
        return doc
    if "oneOf" in doc or isinstance(doc.get("type"), list):
        raise SystemExit(f"datree schema: unexpected converter artefact at {where or '.'}: {sorted(doc)}")
    out = {}
    for key, value in doc.items():
        if key == "additionalProperties" and value is False:
            continue
        # `properties` maps field names to schemas: a field may itself be named like a keyword.
        if key == "properties" and isinstance(value, dict):
            out[key] = {k: _datree_schema(v, f"{where}.{k}") for k, v in value.items()}
        else:
            out[key] = _datree_schema(value, f"{where}.{key}" if key not in ("items",) else f"{where}[]")
    return out


def _adapted_truth(entry: dict[str, Any], data: bytes) -> dict[str, Any]:
    """CRD truth from a file that is not a CRD manifest (`adapter` in pins.yaml)."""
    if entry.get("adapter") != "datree-jsonschema":
        raise SystemExit(f"{entry['path']}: unknown adapter {entry.get('adapter')!r}")
    names = entry["crd"]
    schema = _datree_schema(json.loads(data))
    return {
        "name": f"{names['plural']}.{names['group']}",
        "group": names["group"],
        "kind": names["kind"],
        "plural": names["plural"],
        "scope": names["scope"],
        "versions": {names["version"]: {"storage": True, "deprecated": False, "openAPIV3Schema": schema}},
    }


def _crd_truth(crd: dict[str, Any]) -> dict[str, Any]:
    spec = crd["spec"]
    versions = {}
    for v in spec["versions"]:
        if not v.get("served", False):
            continue
        versions[v["name"]] = {
            "storage": bool(v.get("storage")),
            "deprecated": bool(v.get("deprecated", False)),
            "openAPIV3Schema": (v.get("schema") or {}).get("openAPIV3Schema"),
        }
    return {
        "name": crd["metadata"]["name"],
        "group": spec["group"],
        "kind": spec["names"]["kind"],
        "plural": spec["names"]["plural"],
        "scope": spec["scope"],
        "versions": versions,
    }


class Writer:
    """Collects every generated file so `--check` can compare instead of writing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, bytes] = {}

    def put(self, rel: str, data: bytes) -> None:
        self.files[rel] = data

    def put_json(self, rel: str, doc: Any) -> None:
        self.put(rel, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())

    def put_yaml(self, rel: str, doc: Any) -> None:
        header = "# Generated by components/upstream/refresh.py from pins.yaml; do not edit.\n"
        self.put(rel, (header + yaml.safe_dump(doc, sort_keys=False, width=120)).encode())


def build(mirror: Path | None, cache: Path) -> Writer:
    pins = yaml.safe_load(PINS.read_text())
    out = Writer(HERE)
    repos: dict[str, Repo] = {}

    def repo(name: str) -> Repo:
        if name not in repos:
            repos[name] = Repo(name, mirror, cache)
        return repos[name]

    licenses: dict[str, dict[str, Any]] = {}

    def license_of(name: str, ref: str) -> None:
        if name in licenses:
            return
        r = repo(name)
        for candidate in ("LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING"):
            if r.exists(ref, candidate):
                data = r.show(ref, candidate)
                rel = f"LICENSES/{name.replace('/', '+')}.txt"
                out.put(rel, data)
                licenses[name] = {
                    "file": rel,
                    "repository": name,
                    "ref": ref,
                    "commit": r.commit(ref),
                    "path": candidate,
                    "sha256": _sha(data),
                }
                return
        raise SystemExit(f"{name} has no LICENSE at {ref}")

    crd_sources: dict[str, list[dict[str, Any]]] = {}
    crd_index: dict[str, dict[str, Any]] = {}

    def vendor_crds(entry: dict[str, Any], chart: str | None) -> None:
        r = repo(entry["source"])
        data = r.show(entry["ref"], entry["path"])
        commit = r.commit(entry["ref"])
        truths = [_adapted_truth(entry, data)] if "adapter" in entry else [_crd_truth(c) for c in _crd_docs(data)]
        for truth in truths:
            rel = f"crds/{truth['group']}/{truth['plural']}.json"
            out.put_json(rel, truth)
            crd_sources.setdefault(truth["group"], []).append(
                {
                    "file": Path(rel).name,
                    "kind": truth["kind"],
                    "repository": r.name,
                    "ref": entry["ref"],
                    "commit": commit,
                    "path": entry["path"],
                    "sha256": _sha(data),
                    **({"adapter": entry["adapter"]} if "adapter" in entry else {}),
                }
            )
            for version in truth["versions"]:
                index: dict[str, Any] = {"file": rel, "installed_by": chart}
                if entry.get("provided_by"):
                    index.update(provided_by=entry["provided_by"], provided_since=str(entry["since"]))
                crd_index[f"{truth['group']}/{version}/{truth['kind']}"] = index
        license_of(r.name, entry["ref"])

    for name, pin in pins["charts"].items():
        r = repo(pin["source"])
        commit = r.commit(pin["ref"])
        sources = []
        chart_yaml = r.show(pin["ref"], f"{pin['path']}/Chart.yaml")
        declared = str(yaml.safe_load(chart_yaml).get("version"))
        if declared != str(pin["version"]) and not {"oci", "release_builder"} & set(pin["published"]):
            raise SystemExit(f"{name}: Chart.yaml at {pin['ref']} says {declared}, pinned {pin['version']}")
        for file in ("Chart.yaml", "values.yaml", "values.schema.json"):
            path = f"{pin['path']}/{file}"
            if not r.exists(pin["ref"], path):
                continue
            data = r.show(pin["ref"], path)
            out.put(f"charts/{name}/{file}", data)
            sources.append(
                {
                    "file": file,
                    "repository": r.name,
                    "ref": pin["ref"],
                    "commit": commit,
                    "path": path,
                    "sha256": _sha(data),
                }
            )
        for extra in pin.get("files", []):
            # Chart files the controller renders at run time (Istio's gateway Deployment template).
            data = r.show(pin["ref"], f"{pin['path']}/{extra}")
            out.put(f"charts/{name}/{Path(extra).name}", data)
            sources.append(
                {
                    "file": Path(extra).name,
                    "repository": r.name,
                    "ref": pin["ref"],
                    "commit": commit,
                    "path": f"{pin['path']}/{extra}",
                    "sha256": _sha(data),
                }
            )
        refs = r.values_refs(pin["ref"], f"{pin['path']}/templates")
        out.put_json(f"charts/{name}/values_refs.json", {"chart": name, "paths": refs})
        sources.append(
            {
                "file": "values_refs.json",
                "repository": r.name,
                "ref": pin["ref"],
                "commit": commit,
                "path": f"{pin['path']}/templates",
                "derived": "every `.Values.<path>` the templates read",
            }
        )
        published, src = _published(name, pin, r, repo)
        if str(pin["version"]) not in published["versions"]:
            raise SystemExit(f"{name} {pin['version']} is not published ({published['kind']}: {src})")
        out.put_json(f"charts/{name}/published.json", published)
        sources.append(src)
        out.put_yaml(
            f"charts/{name}/SOURCES.yaml",
            {"chart": name, "version": str(pin["version"]), "repo": pin["repo"], "files": sources},
        )
        license_of(r.name, pin["ref"])
        for entry in pin.get("crds", []):
            vendor_crds({"source": pin["source"], "ref": pin["ref"], **entry}, name)
    for entry in pins.get("crds", []):
        vendor_crds(entry, None)
    for bundle, entries in (pins.get("manifests") or {}).items():
        # Manifests aicloud applies as they are (CRDs no chart installs), verbatim.
        files = []
        for entry in entries:
            r = repo(entry["source"])
            data = r.show(entry["ref"], entry["path"])
            rel = f"manifests/{bundle}/{Path(entry['path']).name}"
            out.put(rel, data)
            files.append(
                {
                    "file": Path(rel).name,
                    "repository": r.name,
                    "ref": entry["ref"],
                    "commit": r.commit(entry["ref"]),
                    "path": entry["path"],
                    "sha256": _sha(data),
                }
            )
            license_of(r.name, entry["ref"])
        out.put_yaml(f"manifests/{bundle}/SOURCES.yaml", {"bundle": bundle, "files": files})
    for group, entries in crd_sources.items():
        out.put_yaml(f"crds/{group}/SOURCES.yaml", {"group": group, "files": entries})
    out.put_json("crds/INDEX.json", crd_index)
    out.put_yaml("LICENSES/SOURCES.yaml", {"files": list(licenses.values())})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mirror", type=Path, help="folder of git mirrors <owner>+<name>/repo (offline)")
    parser.add_argument("--cache", type=Path, help="where to keep blobless clones (default: a temp dir)")
    parser.add_argument("--check", action="store_true", help="compare with the vendored files; write nothing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        written = build(args.mirror, args.cache or Path(tmp))
    current = {
        str(p.relative_to(HERE)): p.read_bytes()
        for top in GENERATED
        if (HERE / top).is_dir()
        for p in (HERE / top).rglob("*")
        if p.is_file()
    }
    changed = sorted(k for k in written.files.keys() | current.keys() if written.files.get(k) != current.get(k))
    if args.check:
        for rel in changed:
            print(f"differs from upstream: components/upstream/{rel}")
        return 1 if changed else 0
    for top in GENERATED:
        shutil.rmtree(HERE / top, ignore_errors=True)
    for rel, data in written.files.items():
        (HERE / rel).parent.mkdir(parents=True, exist_ok=True)
        (HERE / rel).write_bytes(data)
    print(f"vendored {len(written.files)} files ({len(changed)} changed) under {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
