#!/usr/bin/env python3
"""Issue 17's agreement measure: run the R4 cases of HL7's validator test manifest through
`sektorbro validate` and compare verdicts (valid = no error or fatal issue) with the manifest's
expectations for the Java reference validator.

    scripts/hl7-test-cases.py VALIDATOR_DIR [--questionnaires] [--only NAME ...]

VALIDATOR_DIR is the `validator/` folder of a copy of github.com/FHIR/fhir-test-cases (its
`manifest.json`, or with --questionnaires `questionnaire/brianpos/manifest.json`, whose cases
state the expected outcome in their description). The cases stay outside this repository.

- Supporting files and the profile step's files are given to the CLI as a `--package` folder,
  the profile as `--profile`, `allowed-extension-domain` as `--allow-extension-domain`.
- XML cases are read from `<file>.json` beside the XML when present (convert them first, e.g.
  with the reference engine's R4 parsers); otherwise they are skipped, as are cases that need
  packages (`packages`) and cases whose files are missing.
- SEKTORBRO=path picks the binary (default target/release/sektorbro); OUT=file keeps the
  per-case results as JSON.

Figures and what is left, by cause: docs/validation.md ("Measured on HL7's public R4 test cases").
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get('SEKTORBRO', os.path.join(ROOT, 'target/release/sektorbro'))


def expected_errors(block):
    """The error count a manifest expectation block gives (old and new manifest forms)."""
    if block is None:
        return None
    if 'errorCount' in block:
        return block['errorCount']
    issues = (block.get('outcome') or {}).get('issue') or []
    return sum(1 for i in issues if i.get('severity') in ('error', 'fatal'))


def source(base, p):
    """The JSON to validate for manifest path p (an XML case's converted `.json` beside it)."""
    full = os.path.join(base, p)
    if p.endswith('.xml'):
        full += '.json'
    return full if os.path.exists(full) else None


def run_cli(target, package, profile=None, domains=()):
    cmd = [BIN, 'validate', '--format', 'json', '--jobs', '1']
    if package:
        cmd += ['--package', package]
    for d in domains:
        cmd += ['--allow-extension-domain', d]
    if profile:
        cmd += ['--profile', profile]
    cmd.append(target)
    p = subprocess.run(cmd, capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith('{'):
            return json.loads(line)['valid']
    return None


def stage(work, base, files):
    """Copy `files` (manifest paths) into a fresh folder of `work`; None if one is missing."""
    d = tempfile.mkdtemp(dir=work)
    for f in files:
        src = source(base, f)
        if src is None:
            return None
        shutil.copy(src, os.path.join(d, os.path.basename(src)))
    return d


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith('-'):
        print(__doc__)
        return 2
    base = args[0]
    questionnaires = '--questionnaires' in args
    only = set(args[args.index('--only') + 1:]) if '--only' in args else set()
    manifest = os.path.join(base, 'questionnaire/brianpos/manifest.json' if questionnaires
                            else 'manifest.json')
    cases = json.load(open(manifest, encoding='utf-8'))['test-cases']
    work = tempfile.mkdtemp(prefix='hl7-cases-')
    results, skipped = [], {}
    try:
        for c in cases:
            name = c.get('name', '')
            if not str(c.get('version', '')).startswith('4.0') or (only and name not in only):
                continue
            if c.get('packages') or (c.get('profile') or {}).get('packages'):
                skipped['needs packages'] = skipped.get('needs packages', 0) + 1
                continue
            sups = list(c.get('supporting', [])) + list(c.get('profiles', []))
            target = source(base, c['file'])
            package = stage(work, base, sups) if sups else None
            if target is None or (sups and package is None):
                skipped['files missing'] = skipped.get('files missing', 0) + 1
                continue
            domains = c.get('allowed-extension-domain') or c.get('allowed-extension-domains') or []
            domains = [domains] if isinstance(domains, str) else domains
            if questionnaires:
                expect = 'expecting success: true' in c.get('description', '').lower()
            else:
                expect = expected_errors(c.get('java')) == 0
            results.append((name, expect, run_cli(target, package, domains=domains)))
            prof = c.get('profile')
            if prof and 'source' in prof and not questionnaires:
                files = sups + list(prof.get('supporting', [])) + [prof['source']]
                pkg = stage(work, base, files)
                src = source(base, prof['source'])
                if pkg is None or src is None:
                    skipped['files missing'] = skipped.get('files missing', 0) + 1
                    continue
                url = json.load(open(src, encoding='utf-8')).get('url')
                results.append((name + ' [profile]', expected_errors(prof.get('java')) == 0,
                                run_cli(target, pkg, url, domains)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if os.environ.get('OUT'):
        json.dump([{'name': n, 'expect_valid': e, 'ours_valid': o} for n, e, o in results],
                  open(os.environ['OUT'], 'w'), indent=1)
    for label, sel in (('base', lambda n: '[profile]' not in n), ('profile', lambda n: '[profile]' in n)):
        group = [r for r in results if sel(r[0])]
        if group:
            agree = sum(1 for _, e, o in group if e == o)
            print(f'{label}: {agree} of {len(group)} agree ({100 * agree / len(group):.0f} %)')
    print('skipped:', ', '.join(f'{k} {v}' for k, v in skipped.items()) or 'none')
    for n, e, o in results:
        if e != o:
            print('false accept' if o else ('false reject' if o is False else 'no output'), n)
    return 0


if __name__ == '__main__':
    sys.exit(main())
