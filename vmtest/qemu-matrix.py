#!/usr/bin/env python3
"""The model against the real QEMU.

For each QEMU release and each command line of the matrix: start QEMU paused (TCG, no
display, QMP on stdio), read its flat memory map (`info mtree -f`) over QMP, keep the
sections VFIO's listener maps (RAM and ROM regions; not ROM devices in romd mode such as
pflash, not I/O), and compare them with the DMA-mapped RAM/ROM sections of
`iovactl check --json -- <the same argv>`. When QEMU refuses to start, the tool must
predict a refusal too (and vice versa). Prints one line per case and
`qemu-matrix: N passed, M failed`; exits 1 on any failure.

Usage: qemu-matrix.py IOVACTL HOST_ARGS... -- RELEASE=BINARY[,ENV=VAL][,L=DIR] ...
(BINARY is usually the launcher vmtest/qemu-fetch.sh writes, which sets its own
environment and firmware paths; qemu-system-aarch64 is taken from the same folder.)
Environment: IOVA_OVMF_DIR, the folder of OVMF_CODE_4M.fd and OVMF_VARS_4M.fd.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

G = 1 << 30
# OVMF comes from the unpacked firmware of vmtest/qemu-fetch.sh (IOVA_OVMF_DIR); a
# missing image is a failure of the run, never a silently smaller matrix.
OVMF_DIR = os.environ.get("IOVA_OVMF_DIR", "/usr/share/OVMF")
OVMF_CODE = os.path.join(OVMF_DIR, "OVMF_CODE_4M.fd")
OVMF_VARS = os.path.join(OVMF_DIR, "OVMF_VARS_4M.fd")


def x86_cases(tmp):
    """(name, argv tail) for qemu-system-x86_64."""
    cases = []

    def mem(size, machine="q35", cpu="Skylake-Client", extra=(), mopts=""):
        return ["-machine", f"{machine},memory-backend=m0{mopts}", "-cpu", cpu,
                "-object", f"memory-backend-ram,id=m0,size={size},reserve=off",
                "-m", size] + list(extra)

    intel, amd = "Skylake-Client", "EPYC"
    for machine in ["q35", "pc"]:
        for size in ["512M", "2G", "3G", "4G", "8G", "600G", "1000G"]:
            for cpu in [intel, amd]:
                cases.append((f"{machine}-{size}-{cpu}", mem(size, machine, cpu)))
    for machine in ["pc-q35-7.0", "pc-q35-7.1", "pc-i440fx-7.0", "pc-i440fx-7.2", "pc-q35-6.2"]:
        for size in ["8G", "1000G"]:
            cases.append((f"{machine}-{size}-amd", mem(size, machine, amd)))
    # Machine types before 5.0 (libvirt's test suite has many): the oldest each release
    # has (QEMU 10.0 no longer has pc-i440fx before 2.4: both must refuse), before
    # x-pci-hole64-fix (2.11), and one with DIMMs.
    for machine in ["pc-q35-2.4", "pc-q35-2.10", "pc-q35-4.0", "pc-i440fx-2.1", "pc-i440fx-2.4",
                    "pc-i440fx-2.12", "pc-i440fx-4.2"]:
        for size in ["3G", "8G"]:
            cases.append((f"{machine}-{size}-intel", mem(size, machine, intel)))
        base = mem("8G", machine, intel, ["-object", "memory-backend-ram,id=d0,size=4G,reserve=off",
                                          "-device", "pc-dimm,memdev=d0,id=dimm0"])
        base[base.index("8G", base.index("-m"))] = "8G,slots=2,maxmem=32G"
        cases.append((f"{machine}-8G-dimm4G", base))
    cases.append(("q35-1000G-qemu64", mem("1000G", "q35", "qemu64")))
    cases.append(("q35-2T-amd", mem("2T", "q35", amd, ["-cpu", "EPYC,phys-bits=42"])))
    cases.append(("q35-2T-intel", mem("2T", "q35", intel, ["-cpu", f"{intel},phys-bits=42"])))
    cases.append(("q35-978G-amd-phys40", mem("978G", "q35", amd)))
    cases.append(("q35-979G-amd-phys40-refused", mem("979G", "q35", amd)))
    cases.append(("q35-1T-intel-phys40-refused", mem("1T", "q35", intel)))
    cases.append(("pc-1T-intel-phys41", mem("1T", "pc", intel, ["-cpu", f"{intel},phys-bits=41"])))
    # The accepted phys-bits range (x86_cpu_realizefn: 32..52; 0 is the default 40).
    for bits, tag in [("52", "phys52"), ("53", "phys53-refused"), ("31", "phys31-refused"), ("0", "phys0")]:
        cases.append((f"q35-8G-intel-{tag}", mem("8G", "q35", intel, ["-cpu", f"{intel},phys-bits={bits}"])))
    # maxmem / slots / DIMMs
    for machine in ["q35", "pc"]:
        for cpu in [intel, amd]:
            cases.append((f"{machine}-8G-maxmem64G-{cpu}", mem("8G", machine, cpu)[:-1] + ["8G,slots=2,maxmem=64G"]))
        cases.append((f"{machine}-8G-maxmem1T-amd", mem("8G", machine, amd)[:-1] + ["8G,slots=4,maxmem=1T"]))
    dimm = ["-object", "memory-backend-ram,id=d0,size=4G,reserve=off", "-device", "pc-dimm,memdev=d0,id=dimm0"]
    dimm2 = dimm + ["-object", "memory-backend-ram,id=d1,size=2G,reserve=off", "-device", "pc-dimm,memdev=d1,id=dimm1"]
    for machine in ["q35", "pc"]:
        base = mem("8G", machine, intel, dimm)
        base[base.index("8G", base.index("-m"))] = "8G,slots=2,maxmem=32G"
        cases.append((f"{machine}-8G-dimm4G", base))
        base = mem("16G", machine, amd, dimm2)
        base[base.index("16G", base.index("-m"))] = "16G,slots=4,maxmem=64G"
        cases.append((f"{machine}-16G-dimms-amd", base))
    addr = ["-object", "memory-backend-ram,id=d0,size=1G,reserve=off",
            "-device", "pc-dimm,memdev=d0,id=dimm0,addr=0x140000000"]
    base = mem("2G", "q35", intel, addr)
    base[base.index("2G", base.index("-m"))] = "2G,slots=1,maxmem=8G"
    cases.append(("q35-2G-dimm-addr", base))
    outside = [a.replace("0x140000000", "0x300000000") for a in base]
    cases.append(("q35-2G-dimm-addr-outside-refused", outside))
    base = mem("8G", "q35", intel, dimm)
    cases.append(("q35-8G-dimm-without-maxmem-refused", base))
    # pci-hole64-size
    for size, cpu in [("64G", intel), ("1T", amd), ("1T", intel), ("512G", amd)]:
        cases.append((f"q35-8G-hole64-{size}-{cpu}",
                      mem("8G", "q35", cpu, ["-global", f"q35-pcihost.pci-hole64-size={size}"])))
    cases.append(("pc-8G-hole64-16G", mem("8G", "pc", intel, ["-global", "i440FX-pcihost.pci-hole64-size=16G"])))
    cases.append(("pc-8G-hole64-1T-amd", mem("8G", "pc", amd, ["-global", "i440FX-pcihost.pci-hole64-size=1T"])))
    # max-ram-below-4g
    for machine in ["q35", "pc"]:
        cases.append((f"{machine}-8G-below1G", mem("8G", machine, intel, mopts=",max-ram-below-4g=1G")))
        cases.append((f"{machine}-2G-below1536M", mem("2G", machine, intel, mopts=",max-ram-below-4g=1536M")))
    # VGA
    for machine in ["q35", "pc"]:
        cases.append((f"{machine}-4G-nodefaults", mem("4G", machine, intel, ["-nodefaults"])))
        cases.append((f"{machine}-4G-vga-none", mem("4G", machine, intel, ["-vga", "none"])))
        cases.append((f"{machine}-4G-nodefaults-vga-std", mem("4G", machine, intel, ["-nodefaults", "-vga", "std"])))
        cases.append((f"{machine}-4G-nodefaults-cirrus", mem("4G", machine, intel, ["-nodefaults", "-device", "cirrus-vga"])))
    # OVMF in pflash (main() fails the run when the images are missing)
    if os.path.exists(OVMF_CODE) and os.path.exists(OVMF_VARS):
        vars_copy = os.path.join(tmp, "OVMF_VARS.fd")
        shutil.copyfile(OVMF_VARS, vars_copy)
        pfl = ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}",
               "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
        for machine in ["q35", "pc"]:
            for size in ["2G", "8G"]:
                cases.append((f"{machine}-{size}-ovmf", mem(size, machine, intel, pfl)))
            cases.append((f"{machine}-1000G-ovmf-amd", mem("1000G", machine, amd, pfl)))
            cases.append((f"{machine}-4G-ovmf-nodefaults", mem("4G", machine, intel, pfl + ["-nodefaults"])))
    # plain -m without a backend
    cases.append(("q35-plain-m-1024", ["-machine", "q35", "-m", "1024", "-cpu", intel]))
    cases.append(("pc-default-machine-2G", ["-m", "2G", "-cpu", intel]))
    return cases


def arm_cases():
    cases = []

    def mem(size, cpu="max", mopts=""):
        return ["-machine", f"virt,memory-backend=m0{mopts}", "-cpu", cpu,
                "-object", f"memory-backend-ram,id=m0,size={size},reserve=off", "-m", size]

    for size in ["1G", "4G", "255G", "256G", "300G", "600G", "1T"]:
        cases.append((f"virt-{size}-max", mem(size)))
    for size in ["4G", "600G", "1T"]:
        cases.append((f"virt-{size}-a53", mem(size, "cortex-a53")))
    cases.append(("virt-300G-a57", mem("300G", "cortex-a57")))
    cases.append(("virt-3G-highmem-off", mem("3G", "max", ",highmem=off")))
    cases.append(("virt-7.2-8G", ["-machine", "virt-7.2", "-cpu", "max", "-m", "8G"]))
    # virt types from 3.0 map like 5.0; cortex-a15 (libvirt's aarch64 TCG default, 40-bit).
    for machine in ["virt-3.0", "virt-4.0", "virt-4.2"]:
        for size in ["1G", "300G"]:
            cases.append((f"{machine}-{size}-max", [
                "-machine", f"{machine},memory-backend=m0", "-cpu", "max", "-object",
                f"memory-backend-ram,id=m0,size={size},reserve=off", "-m", size]))
    for size in ["1G", "4G", "300G"]:
        cases.append((f"virt-{size}-a15", mem(size, "cortex-a15")))
    return cases


def qmp_run(binary, argv, env):
    """Starts QEMU paused; returns (flat mtree, tree mtree, None) or (None, None, stderr)."""
    # stderr goes to a file: a QEMU that warns a lot (TCG and many -cpu features) would
    # otherwise block on a full pipe before it answers QMP.
    errf = tempfile.TemporaryFile(mode="w+")
    p = subprocess.Popen([binary] + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=errf, text=True, env=env)

    def stderr_text():
        errf.seek(0)
        return errf.read()

    def read():
        while True:
            line = p.stdout.readline()
            if not line:
                return None
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def cmd(name, **args):
        try:
            p.stdin.write(json.dumps({"execute": name, "arguments": args}) + "\n")
            p.stdin.flush()
        except BrokenPipeError:
            return None
        return read()

    try:
        if read() is None or cmd("qmp_capabilities") is None:
            p.wait(timeout=30)
            return None, None, stderr_text()
        flat = cmd("human-monitor-command", **{"command-line": "info mtree -f"})
        tree = cmd("human-monitor-command", **{"command-line": "info mtree"})
        cmd("quit")
        p.wait(timeout=30)
        if flat is None or tree is None:
            return None, None, stderr_text()
        return flat["return"], tree["return"], None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        errf.close()


LINE = re.compile(r"^\s*([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, (\w+)\): (\S+)")


def qemu_mapped(flat, tree):
    """The (first, last, kind) runs VFIO maps in the 'memory' address space."""
    romd = {m.group(4) for m in map(LINE.match, tree.splitlines()) if m and m.group(3) == "romd"}
    blocks = flat.split("FlatView #")
    view = next((b for b in blocks if re.search(r'AS "memory"', b)), None)
    if view is None:
        raise RuntimeError("no FlatView for address space 'memory'")
    out = []
    for line in view.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        first, last, kind, name = int(m.group(1), 16), int(m.group(2), 16), m.group(3), m.group(4)
        if kind not in ("ram", "rom") or name in romd:
            continue
        out.append((first, last, kind))
    return merge(out)


def merge(runs):
    runs = sorted(runs)
    out = []
    for first, last, kind in runs:
        if out and out[-1][2] == kind and out[-1][1] + 1 == first:
            out[-1] = (out[-1][0], last, kind)
        else:
            out.append((first, last, kind))
    return out


def tool(iovactl, host_args, argv):
    r = subprocess.run([iovactl, "check", "--json"] + host_args + ["--"] + argv,
                       capture_output=True, text=True)
    if r.returncode == 2 and "VMM command line" in r.stderr:
        # The tool calls the command line invalid: right only if QEMU refuses it too.
        return None, [r.stderr.strip()], None
    if r.returncode not in (0, 1):
        return None, None, f"iovactl exit {r.returncode}: {r.stderr.strip()}"
    v = json.loads(r.stdout)
    runs = [(int(s["first"], 16), int(s["last"], 16), s["kind"])
            for s in v["layout"] if s["dma_mapped"] and s["kind"] in ("ram", "rom")]
    refused = [p["message"] for p in (v.get("vmm") or {}).get("problems", [])
               if p["kind"] == "refused-at-start"]
    return merge(runs), refused, None


def plan_phys_bits(iovactl, host_args, argv):
    """The phys-bits `iovactl plan` proposes for argv (None when it proposes none or
    changes the layout)."""
    r = subprocess.run([iovactl, "plan", "--json"] + host_args + ["--"] + argv,
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"plan exit {r.returncode}: {r.stderr.strip()}"
    v = json.loads(r.stdout)
    if v["changes"]:
        return None, f"plan changed the layout: {v['changes']}"
    for o in v["options"]:
        m = re.match(r"-cpu (\S+),phys-bits=(\d+)$", o)
        if m:
            return (m.group(1), int(m.group(2))), None
    return None, f"plan proposed no -cpu ...,phys-bits=: {v['options']}"


PHYS_CASES = [
    ("q35-979G-amd", ["-machine", "q35,memory-backend=m0", "-object",
                      "memory-backend-ram,id=m0,size=979G,reserve=off", "-m", "979G", "-cpu", "EPYC"]),
    ("q35-2T-amd", ["-machine", "q35,memory-backend=m0", "-object",
                    "memory-backend-ram,id=m0,size=2T,reserve=off", "-m", "2T", "-cpu", "EPYC"]),
    ("pc-1500G-amd", ["-machine", "pc,memory-backend=m0", "-object",
                      "memory-backend-ram,id=m0,size=1500G,reserve=off", "-m", "1500G", "-cpu", "EPYC"]),
    ("q35-8G-maxmem1T-amd", ["-machine", "q35,memory-backend=m0", "-object",
                             "memory-backend-ram,id=m0,size=8G,reserve=off", "-m",
                             "8G,slots=2,maxmem=1T", "-cpu", "EPYC"]),
    ("q35-4G-qemu64", ["-machine", "q35", "-m", "4G", "-cpu", "qemu64"]),
]


def phys_bits_checks(name, binary, extra, env, iovactl, host_args):
    """QEMU starts with the phys-bits plan proposes and refuses one bit fewer."""
    passed = failed = 0
    for cname, tail in PHYS_CASES:
        base = [binary, "-S", "-accel", "tcg", "-display", "none"] + extra + tail + ["-qmp", "stdio"]
        tag = f"{name}/phys-bits/{cname}"
        got, err = plan_phys_bits(iovactl, host_args, base)
        if got is None:
            print(f"qemu-matrix: FAIL {tag}: {err}")
            failed += 1
            continue
        model, bits = got
        ok_run = qmp_run(binary, base[1:-2] + ["-cpu", f"{model},phys-bits={bits}", "-qmp", "stdio"], env)
        low_run = qmp_run(binary, base[1:-2] + ["-cpu", f"{model},phys-bits={bits - 1}", "-qmp", "stdio"], env)
        if ok_run[2] is not None:
            print(f"qemu-matrix: FAIL {tag}: QEMU refused the planned phys-bits={bits}: {ok_run[2].strip()}")
            failed += 1
        elif low_run[2] is None:
            print(f"qemu-matrix: FAIL {tag}: QEMU started with phys-bits={bits - 1}; the plan is not minimal")
            failed += 1
        else:
            print(f"qemu-matrix: PASS {tag} (starts with phys-bits={bits}, refuses {bits - 1})")
            passed += 1
    return passed, failed


def fmt(runs):
    return " ".join(f"{a:#x}-{b:#x}:{k}" for a, b, k in runs)


def main():
    args = sys.argv[1:]
    if "--" not in args:
        print(__doc__, file=sys.stderr)
        return 2
    sep = args.index("--")
    iovactl, host_args, releases = args[0], args[1:sep], args[sep + 1:]
    passed = failed = 0
    for f in (OVMF_CODE, OVMF_VARS):
        if not os.path.exists(f):
            print(f"qemu-matrix: FAIL ovmf: {f} is missing (set IOVA_OVMF_DIR)")
            failed += 1
    tmp = tempfile.mkdtemp(prefix="qemu-matrix.")
    try:
        for rel in releases:
            name, rest = rel.split("=", 1)
            parts = rest.split(",")
            x86 = parts[0]
            env = dict(os.environ)
            extra = []
            for kv in parts[1:]:
                k, v = kv.split("=", 1)
                if k == "L":
                    extra = ["-L", v]
                else:
                    env[k] = v
            p, f = phys_bits_checks(name, x86, extra, env, iovactl, host_args)
            passed += p
            failed += f
            arm = os.path.join(os.path.dirname(x86), "qemu-system-aarch64")
            suites = [(x86, x86_cases(tmp))]
            if os.path.exists(arm):
                suites.append((arm, arm_cases()))
            else:
                print(f"qemu-matrix: FAIL {name}: {arm} is missing")
                failed += 1
            for binary, cases in suites:
                for cname, tail in cases:
                    argv = [binary, "-S", "-accel", "tcg", "-display", "none"] + extra + tail + [
                        "-qmp", "stdio"]
                    flat, tree, err = qmp_run(binary, argv[1:], env)
                    mine, refused, terr = tool(iovactl, host_args, argv)
                    tag = f"{name}/{cname}"
                    if terr:
                        print(f"qemu-matrix: FAIL {tag}: {terr}")
                        failed += 1
                        continue
                    if err is not None:
                        if refused:
                            print(f"qemu-matrix: PASS {tag} (both refuse: {err.strip().splitlines()[-1] if err.strip() else '?'})")
                            passed += 1
                        else:
                            print(f"qemu-matrix: FAIL {tag}: QEMU refused ({err.strip()}) but the tool did not")
                            failed += 1
                        continue
                    if refused:
                        print(f"qemu-matrix: FAIL {tag}: QEMU started but the tool predicts: {refused[0]}")
                        failed += 1
                        continue
                    theirs = qemu_mapped(flat, tree)
                    if theirs == mine:
                        print(f"qemu-matrix: PASS {tag} ({len(theirs)} mapped runs)")
                        passed += 1
                    else:
                        print(f"qemu-matrix: FAIL {tag}:\n  qemu: {fmt(theirs)}\n  tool: {fmt(mine)}")
                        failed += 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"qemu-matrix: {passed} passed, {failed} failed")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
