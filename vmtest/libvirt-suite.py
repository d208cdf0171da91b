#!/usr/bin/env python3
"""libvirt's own test suite as the matrix (vmtest/libvirt-suite.sh fetches it).

For every x86_64 and aarch64 domain of libvirt's tests/qemuxmlconfdata that has the
QEMU command line libvirt generates for it (NAME.ARCH-VERSION.args), `iovactl check`
runs twice: on the domain XML (--libvirt NAME.xml) and on libvirt's own command line,
unchanged (--cmdline NAME.ARCH-VERSION.args), both with --qemu-version from the file
name ("latest": the newest QEMU whose capabilities the tree holds, per architecture).
The host is a generated profile holding every PCI address the suite assigns, each in
its own group under one 48-bit IOMMU (VT-d with the x86 MSI window for x86_64, an
SMMUv3 with its software MSI window for aarch64), so that every domain can be checked.

Per domain the outcome is one of:
  answered      both paths answer (exit 0 or 1) with the same verdict and the same
                layout, and the RAM both read equals libvirt's -m;
  cannot        both exit 4 ("cannot answer"), naming the option;
  refused       both exit 2 with the same error, for a domain listed in REFUSED with
                QEMU's reason (libvirt's test wrote a command line QEMU itself refuses);
  FAIL          anything else: an exit 2 on an input libvirt produced, an XML path and
                a command-line path that disagree, a RAM other than libvirt's -m.

usage: libvirt-suite.py TESTS_DIR IOVACTL WORK [--max-cannot PERCENT]
TESTS_DIR is libvirt's tests/ directory. Prints one line per failure, the counts of
each outcome and of the options that cannot be answered, and exits 1 on any failure
or when more than PERCENT (default 5) of the domains cannot be answered.
"""

import collections
import concurrent.futures
import glob
import json
import os
import re
import subprocess
import sys
import time


def newest_caps(tests, arch):
    best = None
    for p in glob.glob(os.path.join(tests, "qemucapabilitiesdata", f"caps_*_{arch}.xml")):
        m = re.match(r"caps_(\d+)\.(\d+)\.(\d+)_" + arch + r"\.xml$", os.path.basename(p))
        if m:
            v = tuple(int(x) for x in m.groups())
            best = max(best, v) if best else v
    if not best:
        sys.exit(f"libvirt-suite: no QEMU capabilities for {arch} under {tests}")
    return f"{best[0]}.{best[1]}"


def ram_of_args(text):
    """libvirt's -m: `-m size=219136k` (KiB) or `-m 214` (MiB)."""
    m = re.search(r"(?:^|\s)-m (?:size=)?(\d+)([kKmMgG]?)", text)
    if not m:
        return None
    n, unit = int(m.group(1)), m.group(2).lower()
    return n << {"k": 10, "m": 20, "g": 30, "": 20}[unit]


def profile(arch, bdfs):
    if arch == "x86_64":
        iommu = {"name": "dmar0", "vendor": "intel", "address_width": 48,
                 "aperture": {"first": "0x0", "last": "0xffffffffffff"},
                 "page_sizes": "0x40201000", "interrupt_remapping": True}
        reserved = [{"first": "0xfee00000", "last": "0xfeefffff", "kind": "msi"}]
        settings = {"cpu_vendor": "intel", "interrupt_remapping_active": True,
                    "interrupt_remapping_evidence": "libvirt-suite profile"}
    else:
        iommu = {"name": "smmu3.0x0000000009050000", "vendor": "arm-smmu-v3",
                 "address_width": 48,
                 "aperture": {"first": "0x0", "last": "0xffffffffffff"},
                 "page_sizes": "0x40201000"}
        reserved = [{"first": "0x8000000", "last": "0x80fffff", "kind": "msi"}]
        settings = {"cpu_vendor": "arm"}
    groups, devices = [], []
    for i, b in enumerate(sorted(bdfs)):
        groups.append({"id": i, "type": "DMA", "devices": [b], "iommu": iommu["name"],
                       "reserved_regions": reserved})
        devices.append({"name": b, "group": i, "iommu": iommu["name"],
                        "driver": {"driver": "vfio-pci"}})
    return {"iommus": [iommu], "groups": groups, "devices": devices, "settings": settings}


DUMMY = "0000:ff:1f.7"

# Domains of libvirt's tree whose command line QEMU itself refuses, and both paths say
# so alike (exit 2, the same message): each is listed with QEMU's reason. Any other
# refusal on both paths is a failure (a parser regression would look just like this).
REFUSED = {
    "hugepages-memaccess.x86_64-latest": "a DIMM at 4 GiB, outside the device-memory region",
    "hugepages-memaccess2.x86_64-latest": "a DIMM at 4 GiB, outside the device-memory region",
    "memory-hotplug-dimm-addr.x86_64-latest": "a DIMM at 4 GiB, outside the device-memory region",
    "memory-hotplug-multiple.x86_64-latest": "virtio-mem memaddr below the device-memory region",
    "memory-hotplug-nvdimm-overlap.x86_64-latest": "an NVDIMM at 4 GiB, outside the device-memory region",
    "memory-hotplug-virtio-mem.x86_64-latest": "virtio-mem memaddr below the device-memory region",
    "qemu-ns-alt.x86_64-latest": "an option -unknown passed through <qemu:commandline>",
    "qemu-ns-no-env.x86_64-latest": "an option -unknown passed through <qemu:commandline>",
    "qemu-ns.x86_64-latest": "an option -unknown passed through <qemu:commandline>",
}
# Fewer domains answered alike than this is a failure too (a broken host profile or
# option makes every domain refuse or fail alike).
MIN_ANSWERED = 800

# Domains whose command line in libvirt's tree is one QEMU refuses for a reason the
# domain XML does not show: each is reported, not counted as a failure.
KNOWN = {
    "migrate-numa-unaligned.x86_64-latest":
        "libvirt keeps the unaligned NUMA sizes of an incoming migration: the nodes do "
        "not add up to -m, which QEMU refuses (argv exit 2); the XML path aligns them",
    "net-many-models.x86_64-latest":
        "an interface model 'idontexist': QEMU has no such device (argv exit 4, naming "
        "it); the XML path does not read interface models, which cannot change the map",
}


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    try:
        v = json.loads(p.stdout) if p.stdout.strip() else None
    except json.JSONDecodeError:
        v = None
    return p.returncode, v, p.stderr.strip()


def same_answer(a, b):
    keys = ("name", "kind", "first", "last")
    la = [tuple(s.get(k) for k in keys) for s in a["layout"]]
    lb = [tuple(s.get(k) for k in keys) for s in b["layout"]]
    if la != lb:
        return "layouts differ: " + str([x for x in la if x not in lb][:3]) + " vs " + \
            str([x for x in lb if x not in la][:3])
    if a["ok"] != b["ok"]:
        return f"verdicts differ: XML ok={a['ok']}, argv ok={b['ok']}"
    return None


def main():
    args = sys.argv[1:]
    max_cannot = 5.0
    if "--max-cannot" in args:
        i = args.index("--max-cannot")
        max_cannot = float(args[i + 1])
        del args[i:i + 2]
    if len(args) != 3:
        sys.exit(__doc__)
    tests, iovactl, work = args
    data = os.path.join(tests, "qemuxmlconfdata")
    os.makedirs(work, exist_ok=True)
    latest = {a: newest_caps(tests, a) for a in ("x86_64", "aarch64")}
    cases = []
    bdfs = {"x86_64": {DUMMY}, "aarch64": {DUMMY}}
    for p in sorted(glob.glob(os.path.join(data, "*.args"))):
        m = re.match(r"(.+)\.(x86_64|aarch64)-(.+)\.args$", os.path.basename(p))
        if not m:
            continue
        base, arch, ver = m.groups()
        xml = os.path.join(data, base + ".xml")
        if not os.path.exists(xml):
            continue
        vm = re.match(r"(\d+)\.(\d+)\.\d+$", ver)
        qv = f"{vm.group(1)}.{vm.group(2)}" if vm else latest[arch]
        text = open(p, encoding="utf-8", errors="replace").read()
        for h in re.findall(r'"host":"([0-9a-fA-F:.]+)"', text) + re.findall(r"host=([0-9a-fA-F:.]+)", text):
            bdfs[arch].add(h.lower())
        x = open(xml, encoding="utf-8", errors="replace").read()
        for d, b, s, f in re.findall(
                r"<address\s+domain='(0x[0-9a-fA-F]+)'\s+bus='(0x[0-9a-fA-F]+)'\s+slot='(0x[0-9a-fA-F]+)'\s+function='(0x[0-9a-fA-F]+)'", x):
            bdfs[arch].add(f"{int(d, 16):04x}:{int(b, 16):02x}:{int(s, 16):02x}.{int(f, 16):x}")
        cases.append((base, arch, ver, qv, xml, p, ram_of_args(text)))
    profiles = {}
    for arch in ("x86_64", "aarch64"):
        path = os.path.join(work, f"suite-{arch}.json")
        with open(path, "w") as f:
            json.dump(profile(arch, bdfs[arch]), f)
        profiles[arch] = path

    def one(case):
        base, arch, ver, qv, xml, args_file, ram = case
        common = [iovactl, "check", "--json", "--memlock", "unlimited", "--host", profiles[arch],
                  "--qemu-version", qv, "--device", DUMMY]
        ex, vx, errx = run(common + ["--libvirt", xml])
        ea, va, erra = run(common + ["--cmdline", args_file])
        name = f"{base}.{arch}-{ver}"
        if ex == 2 and ea == 2 and errx == erra and name in REFUSED:
            # libvirt's test wrote a command line QEMU itself refuses (a DIMM outside
            # device memory, an unknown option passed through <qemu:commandline>): both
            # paths say so alike.
            return name, "refused", errx[:160]
        if ex == 4 and ea == 4:
            why = erra or errx
            m = re.search(r"command line: (.*?): cannot answer", erra) or \
                re.search(r"libvirt domain: (.*?): cannot answer", errx)
            return name, "cannot", (m.group(1) if m else why)[:100]
        if ex in (0, 1) and ea in (0, 1) and vx and va:
            d = same_answer(vx, va)
            if d:
                return name, "FAIL", f"XML and argv disagree: {d}"
            got = int(va["vmm"].get("ram", "0")) if va.get("vmm") else None
            gotx = int(vx["vmm"].get("ram", "0")) if vx.get("vmm") else None
            if ram is not None and (got != ram or gotx != ram):
                return name, "FAIL", f"RAM: libvirt's -m is {ram}, argv path {got}, XML path {gotx}"
            return name, "answered", ""
        return name, "FAIL", f"XML exit {ex} ({errx[:160]}); argv exit {ea} ({erra[:160]})"

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as ex:
        results = list(ex.map(one, cases))
    took = time.time() - t0
    results = [(n, "known", KNOWN[n] + f" [{why}]") if w == "FAIL" and n in KNOWN else (n, w, why)
               for n, w, why in results]
    counts = collections.Counter(r[1] for r in results)
    cannot = collections.Counter(r[2] for r in results if r[1] == "cannot")
    for name, what, why in results:
        if what == "known":
            print(f"libvirt-suite: known {name}: {why[:300]}")
        if what == "FAIL":
            print(f"libvirt-suite: FAIL {name}: {why}")
        elif what == "refused":
            print(f"libvirt-suite: refused alike {name}: {why}")
    print(f"libvirt-suite: {len(results)} domains ({2 * len(results)} checks in {took:.1f} s): "
          f"{counts['answered']} answered on both paths, {counts['cannot']} cannot be answered, "
          f"{counts['refused']} refused alike (QEMU would refuse them), {counts['known']} known "
          f"exceptions, {counts['FAIL']} failed")
    for why, n in cannot.most_common():
        print(f"libvirt-suite:   cannot answer ({n}): {why}")
    share = 100.0 * counts["cannot"] / max(1, len(results))
    if share > max_cannot:
        print(f"libvirt-suite: FAIL {share:.1f} % cannot be answered (at most {max_cannot} %)")
    few = counts["answered"] < MIN_ANSWERED
    if few:
        print(f"libvirt-suite: FAIL only {counts['answered']} answered alike (at least {MIN_ANSWERED})")
    return 1 if counts["FAIL"] or share > max_cannot or few else 0


if __name__ == "__main__":
    sys.exit(main())
