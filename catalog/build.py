#!/usr/bin/env python3
"""Build catalog/apps.json from the facts in the upstream cleaned app list.

Usage (from the repository root or anywhere):

    python3 catalog/build.py [INPUT] [--output OUTPUT]

INPUT defaults to ../shared/catalog/cleaned_pinokio_apps.json relative to
the repository root; OUTPUT defaults to catalog/apps.json next to this
script. Standard library only.

Only facts are kept (ids, names, URLs, category, tags, author, installer
type and flags). The upstream `description` sentences are never copied: the
`summary` of each app is generated here from the facts.

The same conversion is implemented in pinokio-core/src/catalog.rs
(`pinokio catalog update --from <upstream file>`); keep the two in step.
"""

import argparse
import json
import os
import sys

SCHEMA = "pinokio-catalog/1"

# Repositories with no public snapshot (matched on owner/repo in repo_url).
MISSING_REPOS = [
    "Paxurux/higgs-audio-v2-ui",
    "6Morpheus6/OmniSVG",
    "FP-Studio/fp-studio",
    "6Morpheus6/Nemoml",
    "TheStingerX/Ilaria-RVC-Zero",
    "cocktailpeanutlabs/framepack",
    "cocktailpeanutlabs/CocktailPeanut",
    "pinokiofactory/Ilaria-RVC",
]

# Ids whose repositories hold no script with a `run` list.
NOT_A_LAUNCHER = [
    "allegro-txt2vid",
    "breadboard",
    "generative-models",
    "kittentts",
    "streamdiffusion",
]

META_TAGS = {"pinokio-tagged"}

CATEGORY_WORDS = {
    "IMAGE": "Image",
    "AUDIO": "Audio",
    "VIDEO": "Video",
    "UTILITY": "Utility",
    "LLM": "LLM",
    "3D": "3D",
}

SUMMARY_TAGS = 3


def owner_repo(url):
    """`owner/repo` of a GitHub-style URL, lower case (None when absent)."""
    path = url.strip()
    for prefix in ("https://", "http://"):
        if path.lower().startswith(prefix):
            path = path[len(prefix):]
    parts = [p for p in path.split("/") if p]
    if len(parts) < 3:
        return None
    repo = parts[2]
    if repo.lower().endswith(".git"):
        repo = repo[:-4]
    return (parts[1] + "/" + repo).lower()


def status_of(app_id, repo_url):
    missing = {r.lower() for r in MISSING_REPOS}
    if owner_repo(repo_url) in missing:
        return "missing"
    if app_id in NOT_A_LAUNCHER:
        return "not_a_launcher"
    return "ok"


def category_word(category):
    return CATEGORY_WORDS.get(category, category.capitalize() if category else "Uncategorised")


def summary_of(category, author, tags):
    """"Audio app by SUP3RMASS1VE (TTS, text-to-speech, voice-generation)"."""
    text = category_word(category) + " app"
    if author:
        text += " by " + author
    shown = [t for t in tags if t.lower() != (author or "").lower()][:SUMMARY_TAGS]
    if shown:
        text += " (" + ", ".join(shown) + ")"
    return text


def convert(app_id, src):
    tags = [t for t in src.get("tags") or [] if isinstance(t, str) and t not in META_TAGS]
    category = src.get("category") or ""
    author = src.get("author") or ""
    repo_url = src.get("repo_url") or ""
    return {
        "id": app_id,
        "name": src.get("name") or app_id,
        "repo_url": repo_url,
        "clone_url": src.get("clone_url") or "",
        "category": category,
        "tags": tags,
        "author": author,
        "installer_type": src.get("installer_type") or "",
        "has_install_js": bool(src.get("has_install_js")),
        "has_install_json": bool(src.get("has_install_json")),
        "has_pinokio_js": bool(src.get("has_pinokio_js")),
        "status": status_of(app_id, repo_url),
        "summary": summary_of(category, author, tags),
    }


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    default_input = os.path.normpath(
        os.path.join(root, "..", "shared", "catalog", "cleaned_pinokio_apps.json")
    )
    p = argparse.ArgumentParser(description="Build catalog/apps.json from the cleaned app list.")
    p.add_argument("input", nargs="?", default=default_input, help="cleaned_pinokio_apps.json")
    p.add_argument("--output", default=os.path.join(here, "apps.json"), help="where to write")
    a = p.parse_args(argv)

    with open(a.input, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        sys.exit(f"{a.input}: expected an object keyed by app id")
    apps = [convert(app_id, src) for app_id, src in sorted(data.items())]

    for r in MISSING_REPOS:
        if not any(owner_repo(x["repo_url"]) == r.lower() for x in apps):
            print(f"warning: missing repository {r} is not in the input", file=sys.stderr)
    for i in NOT_A_LAUNCHER:
        if i not in data:
            print(f"warning: non-launcher id {i} is not in the input", file=sys.stderr)

    out = {"schema": SCHEMA, "generated_from": os.path.basename(a.input), "apps": apps}
    tmp = a.output + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, a.output)
    counts = {}
    for x in apps:
        counts[x["status"]] = counts.get(x["status"], 0) + 1
    print(f"{a.output}: {len(apps)} apps " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main(sys.argv[1:])
