#!/usr/bin/env python3
"""Check every key of a gpt-load keys file against the upstream.

Each key gets one request that costs no tokens (GET on the model listing),
sent the way the proxy sends it, and is classified with the proxy's rules:
valid, rate-limited (valid but busy), quota-exhausted, invalid, or error (no
verdict: the upstream failed, timed out or could not be reached).

Python 3 standard library only. Keys are never printed whole: output shows
them masked like the proxy does. The result files hold the raw keys, since
that is their purpose, and are created with mode 0600.

Exit status: 0 every key is valid or rate-limited; 1 some key is invalid or
out of quota; 2 usage error (bad option, missing or empty keys file, bad
URL); 3 some keys could not be checked and none was invalid; 130 interrupted.
"""

import argparse
import concurrent.futures as futures
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

PROG = "validate-keys"
USER_AGENT = "gpt-load-validate-keys/1"
AZURE_API_VERSION = "2024-10-21"  # as internal/proxy/recheck.go
ANTHROPIC_VERSION = "2023-06-01"
MAX_BODY = 1 << 20  # bytes of an error body read for classification
STYLES = ("auto", "bearer", "azure", "anthropic", "gemini")

VALID = "valid"
RATE_LIMITED = "rate-limited"
QUOTA = "quota-exhausted"
INVALID = "invalid"
ERROR = "error"
CLASSES = (VALID, RATE_LIMITED, QUOTA, INVALID, ERROR)

# Mirrors of internal/classify/body.go.
KEY_INVALID_CODES = frozenset((
    "invalid_api_key", "api_key_invalid", "authentication_error",
    "account_deactivated", "invalid_key",
))
QUOTA_CODES = frozenset((
    "insufficient_quota", "insufficientquota", "billing_hard_limit_reached",
    "billing_not_active", "billing_error", "quota_exceeded",
    "access_terminated", "credit_balance_insufficient",
))

# After this many checks in a row with no HTTP answer at all, and none ever,
# the base URL is taken as unreachable and the remaining keys are not tried.
UNREACHABLE_AFTER = 50


class UsageError(Exception):
    """A problem with the options or input: exit status 2."""


# ---------------------------------------------------------------- settings

def parse_dotenv(path):
    """Read KEY=VALUE lines: comments, `export `, single and double quotes."""
    values = {}
    try:
        with open(path, "r", encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return values
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError("cannot read %s: %s" % (path, describe_os_error(e)))
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[len("export"):].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name:
            continue
        values[name] = dotenv_value(value.strip())
    return values


def dotenv_value(v):
    if v[:1] == '"':
        out, i = [], 1
        escapes = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
        while i < len(v) and v[i] != '"':
            if v[i] == "\\" and i + 1 < len(v):
                out.append(escapes.get(v[i + 1], "\\" + v[i + 1]))
                i += 2
                continue
            out.append(v[i])
            i += 1
        return "".join(out)
    if v[:1] == "'":
        end = v.find("'", 1)
        return v[1:] if end < 0 else v[1:end]
    for sep in (" #", "\t#"):
        i = v.find(sep)
        if i >= 0:
            v = v[:i]
    return v.strip()


def setting(dotenv, name, default):
    """The environment wins over .env; empty means unset, as in the proxy."""
    v = os.environ.get(name, "").strip()
    if v:
        return v
    v = dotenv.get(name, "").strip()
    return v if v else default


def parse_base_url(raw, source):
    """Like config.ParseUpstream: http(s), a host, no query; no trailing /."""
    def bad(why):
        return UsageError("%s %s: %s" % (source, json.dumps(raw), why))
    try:
        u = urllib.parse.urlsplit(raw)
        port = u.port
    except ValueError:
        raise bad("not a URL (or port out of range)")
    if u.scheme not in ("http", "https"):
        raise bad("scheme must be http or https")
    if not u.hostname:
        raise bad("has no host")
    if u.username is not None or u.password is not None:
        raise bad("must not carry user info")
    if u.query or u.fragment or raw.rstrip().endswith("?"):
        raise bad("must not have a query or fragment")
    if port is not None and not 1 <= port <= 65535:
        raise bad("port out of range")
    return u.scheme, u.netloc, u.path.rstrip("/"), u.hostname.lower().rstrip(".")


def style_for_host(host):
    """Mirror of upstream.StyleForHost."""
    if host.endswith(".openai.azure.com"):
        return "azure"
    if host == "api.anthropic.com":
        return "anthropic"
    if host == "generativelanguage.googleapis.com":
        return "gemini"
    return "bearer"


def versioned(base):
    seg = base[base.rfind("/") + 1:]
    return len(seg) >= 2 and seg[0] == "v" and seg[1].isdigit() and seg[1].isascii()


def check_path(base, style, model):
    """Path and query of the check request, like proxy.CheckPath.

    Without a model: the model listing. With one: the chat completion at the
    same place (Azure's per-deployment path, Gemini's OpenAI-compatible one).
    """
    if style == "azure":
        if "/openai" not in base:
            base += "/openai"
        if model:
            dep = urllib.parse.quote(model, safe="")
            return base + "/deployments/" + dep + "/chat/completions", "api-version=" + AZURE_API_VERSION
        return base + "/models", "api-version=" + AZURE_API_VERSION
    if style == "gemini" and base == "":
        return ("/v1beta/openai/chat/completions" if model else "/v1beta/models"), ""
    tail = "/chat/completions" if model else "/models"
    if base and versioned(base):
        return base + tail, ""
    return base + "/v1" + tail, ""


def auth_headers(style, key):
    if style == "azure":
        return {"api-key": key}
    if style == "anthropic":
        return {"x-api-key": key, "anthropic-version": ANTHROPIC_VERSION}
    if style == "gemini":
        return {"x-goog-api-key": key}
    return {"Authorization": "Bearer " + key}


# ---------------------------------------------------------------- keys

def mask(s):
    """Mirror of secret.Mask: at most the first 6 and last 4 characters."""
    n = len(s)
    head, tail = min(6, n // 4), min(4, n // 5)
    return s[:head] + "\u2026" + s[n - tail:]


def is_space(c):
    """Mirror of Go's unicode.IsSpace (Python's isspace also takes \\x1c-\\x1f)."""
    return c in "\t\n\v\f\r \x85\xa0" if ord(c) <= 0xFF else c.isspace()


def go_trim(s):
    """Mirror of Go's strings.TrimSpace."""
    i, j = 0, len(s)
    while i < j and is_space(s[i]):
        i += 1
    while j > i and is_space(s[j - 1]):
        j -= 1
    return s[i:j]


def read_keys(path):
    """Parse like keymanager.Parse. Returns (keys, duplicate lines, duplicated keys)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise UsageError("keys file %s: not found" % json.dumps(path))
    except OSError as e:
        raise UsageError("keys file %s: %s" % (json.dumps(path), describe_os_error(e)))
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = data.decode("utf-8", errors="surrogateescape")
    keys, seen, dups, dup_keys = [], set(), 0, {}
    spaced = []
    for n, line in enumerate(text.split("\n"), 1):
        line = go_trim(line)
        if not line or line[0] == "#":
            continue
        # A "#" after whitespace starts a comment; a line that still holds
        # whitespace is not a key (only its number is shown).
        for i in range(1, len(line)):
            if line[i] == "#" and is_space(line[i - 1]):
                line = go_trim(line[:i])
                break
        if any((ord(c) < 0x20 and not is_space(c)) or ord(c) == 0x7F for c in line):
            raise UsageError("keys file %s: line %d: key contains a control character" % (json.dumps(path), n))
        if any(is_space(c) for c in line):
            spaced.append(n)
            continue
        if line in seen:
            dups += 1
            dup_keys[line] = None
            continue
        seen.add(line)
        keys.append(line)
    if spaced:
        sys.stderr.write("%s: keys file %s: skipped %d line%s holding whitespace inside (a key has none): "
                         "line%s %s\n" % (PROG, json.dumps(path), len(spaced), "" if len(spaced) == 1 else "s",
                                          "" if len(spaced) == 1 else "s", ", ".join(map(str, spaced[:10]))))
    if not keys:
        raise UsageError("keys file %s: no keys (only blank lines and # comments)" % json.dumps(path))
    return keys, dups, list(dup_keys)


# ---------------------------------------------------------------- checking

class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Never follow a redirect: the key would be sent to wherever it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_local = threading.local()


def opener():
    o = getattr(_local, "opener", None)
    if o is None:
        # build_opener keeps the default ProxyHandler: *_proxy variables apply.
        o = _local.opener = urllib.request.build_opener(NoRedirect)
    return o


def parse_error(body):
    """Mirror of classify.parseError: (code, type, status, reasons)."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return "", "", "", []
    if isinstance(doc, list):
        doc = doc[0] if doc else None
    if not isinstance(doc, dict) or not isinstance(doc.get("error"), dict):
        return "", "", "", []
    err = doc["error"]
    code = err.get("code")
    code = code.lower() if isinstance(code, str) else ""
    typ = err.get("type")
    typ = typ.lower() if isinstance(typ, str) else ""
    status = err.get("status")
    status = status.upper() if isinstance(status, str) else ""
    reasons = []
    details = err.get("details")
    if isinstance(details, list):
        for d in details:
            if isinstance(d, dict) and isinstance(d.get("reason"), str) and d["reason"]:
                reasons.append(d["reason"].upper())
    return code, typ, status, reasons


def is_ident(s):
    return all(c.isascii() and (c.isalnum() or c in "_-.") for c in s)


def label(s):
    """Mirror of classify's label: a short identifier that cannot be a key."""
    if not s or len(s) > 64 or not is_ident(s):
        return False
    # A long run of letters and digits mixed, or a long one without an
    # underscore, may be a key quoted back by the upstream.
    for tok in re.findall(r"[A-Za-z0-9_-]{20,}", s):
        if re.search(r"[A-Za-z]", tok) and re.search(r"[0-9]", tok):
            return False
    return len(s) < 20 or "_" in s


def classify(status, body):
    """Mirror of classify.Attempt for an HTTP answer: (class, reason)."""
    if 200 <= status < 300:
        return VALID, ""
    if 300 <= status < 400:
        # The proxy's re-check restores a key only on a 2xx, and a redirect
        # is not followed: it would carry the key elsewhere.
        return ERROR, "status %d (redirect not followed)" % status
    if status < 400:
        return ERROR, "status %d" % status
    code, typ, st, reasons = parse_error(body)

    def has(codes):
        return code in codes or typ in codes or any(r.lower() in codes for r in reasons)

    reason = "status %d" % status
    for s in (code, typ):
        if label(s):
            reason = s
            break
    else:
        for r in reasons:
            if label(r):
                reason = r.lower()
                break
        else:
            if label(st):
                reason = st.lower()
    if status in (401, 403):
        return INVALID, reason
    if status == 402:
        # OpenAI-compatible providers answer 402 for an account out of
        # balance; the proxy blacklists such a key.
        return QUOTA, reason
    if status == 400 and has(KEY_INVALID_CODES):
        return INVALID, reason
    if status == 429:
        return (QUOTA if has(QUOTA_CODES) else RATE_LIMITED), reason
    # No verdict on the key: the upstream failed (5xx) or did not take the
    # request (other 4xx, e.g. a wrong base URL). Show the status too.
    if reason != "status %d" % status:
        reason = "status %d %s" % (status, reason)
    elif status in (404, 405):
        reason += " (is the base URL right?)"
    return ERROR, reason


def transport_reason(e):
    """A short reason for a request that got no HTTP answer."""
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(e, ssl.SSLError) or isinstance(e, ssl.CertificateError):
        return "tls failure"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ConnectionResetError):
        return "connection reset"
    if isinstance(e, socket.gaierror):
        return "host not found"
    if isinstance(e, UnicodeEncodeError):
        return "key has characters that cannot be sent in a header"
    return "connection failed"


class Checker:
    def __init__(self, scheme, netloc, base, style, model, timeout):
        path, query = check_path(base, style, model)
        self.url = urllib.parse.urlunsplit((scheme, netloc, path, query, ""))
        self.style = style
        self.model = model
        self.timeout = timeout
        self.method = "POST" if model else "GET"
        self.body = None
        if model:
            self.body = json.dumps({
                "model": model,
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 1,
            }, separators=(",", ":")).encode()

    def describe(self):
        return "%s %s" % (self.method, self.url)

    def check(self, key):
        """Returns (class, reason, got_http_answer)."""
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        try:
            headers.update(auth_headers(self.style, key))
            req = urllib.request.Request(self.url, data=self.body, headers=headers, method=self.method)
            with opener().open(req, timeout=self.timeout) as resp:
                resp.read(MAX_BODY)
                return classify(resp.status, b"") + (True,)
        except urllib.error.HTTPError as e:
            try:
                body = e.read(MAX_BODY)
            except Exception:  # a body cut short still has its status
                body = b""
            finally:
                e.close()
            return classify(e.code, body or b"") + (True,)
        except Exception as e:  # anything else: no verdict for this key
            return ERROR, transport_reason(e), False


# ---------------------------------------------------------------- progress

class Progress:
    def __init__(self, total, stream):
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.next_step = 1
        self.drawn = False

    def line(self, done, counts):
        el = max(time.monotonic() - self.started, 1e-9)
        return "%d/%d  valid %d  rate-limited %d  quota %d  invalid %d  error %d  %.1f keys/s" % (
            done, self.total, counts[VALID], counts[RATE_LIMITED], counts[QUOTA],
            counts[INVALID], counts[ERROR], done / el)

    def update(self, done, counts, force=False):
        if self.tty:
            now = time.monotonic()
            if force or now - self.last_draw >= 0.1 or done == self.total:
                self.last_draw = now
                self.stream.write("\r" + self.line(done, counts) + "\x1b[K")
                self.stream.flush()
                self.drawn = True
            return
        # Not a terminal (a log, CI): one line each time another tenth is done.
        step = done * 10 // self.total
        if step >= self.next_step:
            self.next_step = step + 1
            self.stream.write("%s: %3d%%  %s\n" % (PROG, done * 100 // self.total, self.line(done, counts)))
            self.stream.flush()

    def finish(self):
        if self.tty and self.drawn:
            self.stream.write("\n")
            self.stream.flush()


# ---------------------------------------------------------------- output

# The result files hold raw keys: by default they go into this folder, which
# .gitignore lists, so that a `git add .` in the checkout cannot commit them.
DEFAULT_OUTPUT = "validated-keys"

def write_keys(folder, name, keys):
    """Write keys one per line, mode 0600, replacing the file atomically."""
    path = os.path.join(folder, name)
    tmp = os.path.join(folder, ".%s.%d.tmp" % (name, os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
            for k in keys:
                f.write(k + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def describe_os_error(e):
    return e.strerror or str(e) if isinstance(e, OSError) else str(e)


# ---------------------------------------------------------------- main

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="validate-keys.py",
        description="Check every key of a gpt-load keys file against the upstream with a request "
                    "that costs no tokens (GET on the model listing), classify it with the proxy's "
                    "rules, and write valid_keys.txt, invalid_keys.txt, duplicate_keys.txt and "
                    "error_keys.txt. Defaults come from the environment, then .env in the working "
                    "directory.",
        epilog="Exit status: 0 all keys valid or rate-limited; 1 some key invalid or out of quota; "
               "2 usage error; 3 some keys could not be checked (error), none invalid; "
               "130 interrupted (partial results are written). Keys are only ever printed masked; "
               "the result files hold raw keys and are created with mode 0600.")
    p.add_argument("-f", "--file", metavar="PATH",
                   help="keys file, one key per line (default: KEYS_FILE, else keys.txt)")
    p.add_argument("-u", "--base-url", metavar="URL",
                   help="upstream base URL (default: first entry of OPENAI_BASE_URL, "
                        "else https://api.openai.com)")
    p.add_argument("-c", "--concurrency", metavar="N", type=int, default=10,
                   help="keys checked at once (default: 10)")
    p.add_argument("-t", "--timeout", metavar="SECONDS", type=float, default=15.0,
                   help="timeout of each check, connecting and each read (default: 15)")
    p.add_argument("-o", "--output", metavar="DIR", default=DEFAULT_OUTPUT,
                   help="folder for the result files, created (mode 0700) if missing (default: %s, "
                        "which the repository's .gitignore ignores: the files hold raw keys)" % DEFAULT_OUTPUT)
    p.add_argument("--auth-style", choices=STYLES, metavar="STYLE",
                   help="how the key is sent: auto (by host, like the proxy), bearer, azure, anthropic, "
                        "gemini (default: UPSTREAM_AUTH_STYLE, else auto)")
    p.add_argument("-m", "--model", metavar="MODEL",
                   help="instead of listing models, send a 1-token chat completion to MODEL "
                        "(costs a token per key; for gateways without a model listing)")
    a = p.parse_args(argv)
    if a.concurrency < 1 or a.concurrency > 1000:
        p.error("--concurrency must be between 1 and 1000")
    if not a.timeout > 0 or a.timeout > 3600:
        p.error("--timeout must be more than 0 and at most 3600 seconds")
    return a


def configure(a):
    dotenv = parse_dotenv(".env")
    keys_file = a.file or setting(dotenv, "KEYS_FILE", "keys.txt")
    if a.base_url is not None:
        raw_url, source = a.base_url.strip(), "--base-url"
    else:
        raw_list = setting(dotenv, "OPENAI_BASE_URL", "https://api.openai.com")
        items = [s.strip() for s in raw_list.split(",") if s.strip()]
        if not items:
            raise UsageError("OPENAI_BASE_URL %s: names no URL" % json.dumps(raw_list))
        raw_url, source = items[0], "OPENAI_BASE_URL"
    scheme, netloc, base, host = parse_base_url(raw_url, source)
    style = a.auth_style
    if style is None:
        style = setting(dotenv, "UPSTREAM_AUTH_STYLE", "auto").lower()
        if style not in STYLES:
            raise UsageError("UPSTREAM_AUTH_STYLE %s: must be one of %s" % (
                json.dumps(style), ", ".join(STYLES)))
    if style == "auto":
        style = style_for_host(host)
    return keys_file, raw_url, scheme, netloc, base, style


def run(a):
    keys_file, raw_url, scheme, netloc, base, style = configure(a)
    keys, dup_lines, dup_keys = read_keys(keys_file)
    try:
        os.makedirs(a.output, mode=0o700, exist_ok=True)
    except OSError as e:
        raise UsageError("output folder %s: %s" % (json.dumps(a.output), describe_os_error(e)))
    if not os.path.isdir(a.output):
        raise UsageError("output folder %s: not a folder" % json.dumps(a.output))

    checker = Checker(scheme, netloc, base, style, a.model, a.timeout)
    total = len(keys)
    results = [None] * total  # (class, reason) per key, in file order
    counts = dict.fromkeys(CLASSES, 0)
    progress = Progress(total, sys.stderr)
    done = 0
    answered = False       # some check got an HTTP answer
    no_answer_run = 0      # checks in a row without one
    unreachable = None     # reason, when the base URL was given up on
    interrupted = False

    pool = futures.ThreadPoolExecutor(max_workers=a.concurrency, thread_name_prefix="check")
    pending = {}
    next_index = 0
    window = a.concurrency * 2
    try:
        while next_index < total or pending:
            while next_index < total and len(pending) < window and unreachable is None:
                pending[pool.submit(checker.check, keys[next_index])] = next_index
                next_index += 1
            if not pending:
                break
            finished, _ = futures.wait(pending, timeout=0.2, return_when=futures.FIRST_COMPLETED)
            for fut in finished:
                i = pending.pop(fut)
                cls, reason, got_answer = fut.result()
                results[i] = (cls, reason)
                counts[cls] += 1
                done += 1
                if got_answer:
                    answered, no_answer_run = True, 0
                else:
                    no_answer_run += 1
                    if not answered and no_answer_run >= min(UNREACHABLE_AFTER, total) and unreachable is None:
                        unreachable = reason
            progress.update(done, counts)
    except KeyboardInterrupt:
        interrupted = True
        for fut in pending:
            fut.cancel()
    progress.update(done, counts, force=True)
    progress.finish()
    elapsed = time.monotonic() - progress.started
    # Do not wait for checks still in flight when interrupted.
    pool.shutdown(wait=not interrupted)

    not_checked = [keys[i] for i in range(total) if results[i] is None]
    return report(a, keys, results, counts, dup_lines, dup_keys, not_checked, elapsed,
                  checker, style, raw_url, answered, unreachable, interrupted)


def report(a, keys, results, counts, dup_lines, dup_keys, not_checked, elapsed,
           checker, style, raw_url, answered, unreachable, interrupted):
    by_class = {c: [] for c in CLASSES}
    reasons = {c: {} for c in CLASSES}
    for k, r in zip(keys, results):
        if r is None:
            continue
        cls, reason = r
        by_class[cls].append(k)
        if reason:
            reasons[cls][reason] = reasons[cls].get(reason, 0) + 1

    outputs = [
        ("valid_keys.txt", by_class[VALID] + by_class[RATE_LIMITED]),
        ("invalid_keys.txt", by_class[INVALID] + by_class[QUOTA]),
        ("duplicate_keys.txt", dup_keys),
        ("error_keys.txt", by_class[ERROR] + not_checked),
    ]
    written, write_failed = [], None
    for name, ks in outputs:
        try:
            written.append((write_keys(a.output, name, ks), len(ks)))
        except OSError as e:
            write_failed = "could not write %s: %s" % (
                os.path.join(a.output, name), describe_os_error(e))
            break

    checked = sum(counts.values())
    out = []
    out.append("checked %d of %d keys in %.1fs (%.1f keys/s): %s, auth %s" % (
        checked, len(keys), elapsed, checked / max(elapsed, 1e-9), checker.describe(), style))

    def reason_text(c):
        items = sorted(reasons[c].items(), key=lambda kv: (-kv[1], kv[0]))
        return ("  (" + ", ".join("%s: %d" % kv for kv in items) + ")") if items else ""

    labels = {VALID: "valid", RATE_LIMITED: "rate-limited", QUOTA: "quota-exhausted",
              INVALID: "invalid", ERROR: "error"}
    for c in CLASSES:
        text = reason_text(c) if c != VALID else ""
        out.append("  %-16s %d%s" % (labels[c], counts[c], text))
    if not_checked:
        out.append("  %-16s %d  (listed in error_keys.txt to check again)" % ("not checked", len(not_checked)))
    out.append("  %-16s %d line%s dropped (%d distinct key%s)" % (
        "duplicates", dup_lines, "" if dup_lines == 1 else "s",
        len(dup_keys), "" if len(dup_keys) == 1 else "s"))
    errs = [(k, r[1]) for k, r in zip(keys, results) if r is not None and r[0] == ERROR]
    if errs:
        out.append("keys that could not be checked (masked):")
        shown = 20
        for k, reason in errs[:shown]:
            out.append("  %s  %s" % (mask(k), reason))
        if len(errs) > shown:
            out.append("  ... and %d more (all in error_keys.txt)" % (len(errs) - shown))
    if written:
        out.append("wrote " + ", ".join("%s (%d)" % w for w in written))
        out.append("the result files are in %s/ (raw keys, mode 0600; keep them out of version control)"
                   % os.path.abspath(a.output))
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()

    problems = []
    if checked and not answered:
        msg = "could not reach %s (%s)" % (raw_url, ", ".join(sorted(reasons[ERROR])))
        if unreachable is not None and not_checked:
            msg += "; gave up after %d checks, the other %d keys are in error_keys.txt" % (
                checked, len(not_checked))
        problems.append(msg)
    if interrupted:
        problems.append("interrupted: %d of %d keys checked; partial results written" % (checked, len(keys)))
    if write_failed:
        problems.append(write_failed)
    for p in problems:
        sys.stderr.write("%s: %s\n" % (PROG, p))
    sys.stderr.flush()

    if interrupted:
        return 130
    if counts[INVALID] or counts[QUOTA]:
        return 1
    if counts[ERROR] or not_checked or write_failed:
        return 3
    return 0


def on_sigterm(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    for stream in (sys.stdout, sys.stderr):
        try:  # a terminal that cannot show "…" gets an escape, not a crash
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):
            pass
    a = parse_args(sys.argv[1:] if argv is None else argv)
    try:  # SIGTERM stops like Ctrl-C: partial results are written
        signal.signal(signal.SIGTERM, on_sigterm)
    except (ValueError, OSError):
        pass
    try:
        code = run(a)
    except UsageError as e:
        sys.stderr.write("%s: %s\n" % (PROG, e))
        return 2
    except KeyboardInterrupt:  # before any check started
        sys.stderr.write("%s: interrupted\n" % PROG)
        return 130
    if code == 130:
        # Checks still in flight would hold the exit for up to a timeout.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    return code


if __name__ == "__main__":
    sys.exit(main())
