#!/usr/bin/python3
"""Reads YAML files with PyYAML's pure-Python SafeLoader (a reader independent of
libyaml) and prints one JSON array: the value of each file, or with --all a list of
each file's documents. NaN and infinities become "<nan>", "<inf>", "<-inf>"; any
value JSON cannot hold (a date, a non-string key) is an error, so a string the
encoder failed to quote shows up as a failure."""
import json
import math
import sys

import yaml


def fix(v):
    if isinstance(v, bool) or v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, float):
        if math.isnan(v):
            return "<nan>"
        if math.isinf(v):
            return "<inf>" if v > 0 else "<-inf>"
        return v
    if isinstance(v, dict):
        out = {}
        for k, x in v.items():
            if not isinstance(k, str):
                raise SystemExit("non-string key %r (%s)" % (k, type(k).__name__))
            out[k] = fix(x)
        return out
    if isinstance(v, list):
        return [fix(x) for x in v]
    raise SystemExit("unexpected %s: %r" % (type(v).__name__, v))


def main():
    args = sys.argv[1:]
    all_docs = args[:1] == ["--all"]
    if all_docs:
        args = args[1:]
    out = []
    for name in args:
        with open(name, "rb") as f:
            text = f.read().decode("utf-8")
        if all_docs:
            out.append([fix(d) for d in yaml.load_all(text, Loader=yaml.SafeLoader)])
        else:
            out.append(fix(yaml.load(text, Loader=yaml.SafeLoader)))
    json.dump(out, sys.stdout)


main()
