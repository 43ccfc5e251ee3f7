"""Test keys with the right structure, built at test time from each format's public description.

Nothing here is a real credential: every value is random characters in the documented shape
(prefix, alphabet, length, checksum).
"""

from __future__ import annotations

import base64
import json
import random
import string

from portcullis.detect._validate import github_checksum, luhn_ok

__all__ = ["SAMPLES", "card", "github_token", "iban", "jwt", "rand"]

_R = random.Random(1234)
AN = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
UP = string.ascii_uppercase + string.digits
B64 = AN + "+/"
URLSAFE = AN + "_-"


def rand(alphabet: str, n: int) -> str:
    """``n`` random characters from ``alphabet`` (seeded, so failures reproduce)."""
    return "".join(_R.choice(alphabet) for _ in range(n))


def github_token(prefix: str = "ghp_") -> str:
    """A classic GitHub token: 30 random base62 characters and their CRC32 in base62."""
    body = rand(AN, 30)
    return prefix + body + github_checksum(body)


def jwt(header: dict[str, str] | None = None) -> str:
    """A structurally valid JWT with a random signature."""

    def enc(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{enc(header or {'alg': 'HS256', 'typ': 'JWT'})}.{enc({'sub': rand(AN, 12), 'iat': 1700000000})}.{rand(URLSAFE, 43)}"


def card(prefix: str = "4", length: int = 16) -> str:
    """A random card number with a valid Luhn digit."""
    while True:
        body = prefix + rand(string.digits, length - len(prefix) - 1)
        for d in string.digits:
            if luhn_ok(body + d) and len(set(body + d)) >= 3:
                return body + d


def iban(country: str = "DE", length: int = 22) -> str:
    """A random IBAN with correct mod-97 check digits."""
    bban = rand(string.digits, length - 4)
    moved = bban + country + "00"
    check = 98 - int("".join(str(int(c, 36)) for c in moved)) % 97
    return f"{country}{check:02d}{bban}"


def _pem(label: str) -> str:
    body = "\n".join(rand(B64, 64) for _ in range(8))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


def _basic() -> str:
    return base64.b64encode(f"deploy:{rand(AN, 14)}".encode()).decode()


# rule id -> (text containing one secret, the secret itself)
SAMPLES: dict[str, tuple[str, str]] = {}


def _add(rule: str, secret: str, template: str = "value: {s}\n") -> None:
    SAMPLES[rule] = (template.format(s=secret), secret)


_add("aws-access-key-id", "AKIA" + rand("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16))
_add("aws-secret-access-key", rand(B64, 40), 'aws_secret_access_key = "{s}"\n')
_add("aws-session-token", rand(B64, 300), "AWS_SESSION_TOKEN={s}\n")
_add(
    "aws-mws-key",
    f"amzn.mws.{rand(HEX, 8)}-{rand(HEX, 4)}-{rand(HEX, 4)}-{rand(HEX, 4)}-{rand(HEX, 12)}",
)
_add("alibaba-access-key-id", "LTAI" + rand(AN, 20))
_add("gcp-api-key", "AIza" + rand(URLSAFE, 35))
_add("google-oauth-client-secret", "GOCSPX-" + rand(URLSAFE, 28))
_add("google-oauth-access-token", "ya29." + rand(URLSAFE, 120))
_add(
    "azure-storage-account-key",
    rand(B64, 86) + "==",
    "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={s};EndpointSuffix=core.windows.net\n",
)
_add(
    "azure-shared-access-key",
    rand(B64, 43) + "=",
    "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;SharedAccessKey={s}\n",
)
_add(
    "azure-sas-signature",
    rand(AN + "%", 46),
    "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&se=2026-01-01&sp=r&sig={s}\n",
)
_add("azure-ad-client-secret", rand(AN, 3) + "8Q~" + rand(AN + "_~.-", 34))
_add("azure-client-secret", rand(AN, 37), 'AZURE_CLIENT_SECRET="{s}"\n')
_add("azure-devops-pat", rand("abcdefghijklmnopqrstuvwxyz234567", 52), "azure_devops_pat: {s}\n")
_add("github-pat-classic", github_token("ghp_"))
_add("github-oauth-token", github_token("gho_"))
_add("github-user-to-server-token", github_token("ghu_"))
_add("github-server-to-server-token", github_token("ghs_"))
_add("github-refresh-token", github_token("ghr_"))
_add("github-pat-fine-grained", f"github_pat_{rand(AN, 22)}_{rand(AN, 59)}")
_add("gitlab-pat", "glpat-" + rand(URLSAFE, 20))
_add("gitlab-deploy-token", "gldt-" + rand(URLSAFE, 20))
_add("gitlab-runner-token", "glrt-" + rand(URLSAFE, 20))
_add("gitlab-runner-registration-token", "GR1348941" + rand(URLSAFE, 20))
_add("gitlab-pipeline-trigger-token", "glptt-" + rand(HEX, 40))
_add("gitlab-feed-token", "glft-" + rand(URLSAFE, 20))
_add("gitlab-oauth-app-secret", "gloas-" + rand(URLSAFE, 64))
_add("gitlab-cicd-job-token", "glcbt-" + rand(URLSAFE, 24))
_add("bitbucket-app-password", "ATBB" + rand(AN, 32))
_add("atlassian-api-token", "ATATT3" + rand(URLSAFE, 186))
_add("atlassian-context-token", rand(AN, 24), "JIRA_API_TOKEN={s}\n")
_add("slack-bot-token", f"xoxb-{rand(string.digits, 12)}-{rand(string.digits, 13)}-{rand(AN, 24)}")
_add(
    "slack-user-token",
    f"xoxp-{rand(string.digits, 12)}-{rand(string.digits, 12)}-{rand(string.digits, 13)}-{rand(AN, 32)}",
)
_add("slack-app-token", f"xapp-1-{rand(UP, 11)}-{rand(string.digits, 13)}-{rand(HEX, 64)}")
_add("slack-legacy-token", f"xoxs-{rand(string.digits, 10)}-{rand(AN, 40)}")
_add(
    "slack-webhook-url",
    f"https://hooks.slack.com/services/T{rand(UP, 8)}/B{rand(UP, 10)}/{rand(AN, 24)}",
)
_add("stripe-secret-key", "sk_live_" + rand(AN, 24))
_add("stripe-restricted-key", "rk_live_" + rand(AN, 24))
_add("stripe-test-secret-key", "sk_test_" + rand(AN, 24))
_add("stripe-webhook-secret", "whsec_" + rand(AN, 32))
_add("square-access-token", "EAAA" + rand(URLSAFE, 60))
_add("square-oauth-secret", "sq0csp-" + rand(URLSAFE, 43))
_add("shopify-access-token", "shpat_" + rand(HEX, 32))
_add("shopify-shared-secret", "shpss_" + rand(HEX, 32))
_add(
    "braintree-access-token",
    f"access_token$production${rand('abcdefghijklmnopqrstuvwxyz0123456789', 16)}${rand(HEX, 32)}",
)
_add(
    "plaid-access-token",
    f"access-sandbox-{rand(HEX, 8)}-{rand(HEX, 4)}-{rand(HEX, 4)}-{rand(HEX, 4)}-{rand(HEX, 12)}",
)
_add("flutterwave-secret-key", f"FLWSECK_TEST-{rand('abcdefgh0123456789', 32)}-X")
_add("shippo-api-token", "shippo_live_" + rand(HEX, 40))
_add("easypost-api-key", "EZAK" + rand(AN, 54))
_add("twilio-api-key", "SK" + rand(HEX, 32))
_add("twilio-auth-token", rand(HEX, 32), "TWILIO_AUTH_TOKEN={s}\n")
_add("sendgrid-api-key", f"SG.{rand(URLSAFE, 22)}.{rand(URLSAFE, 43)}")
_add("mailgun-api-key", "key-" + rand(HEX, 32))
_add("mailchimp-api-key", rand(HEX, 32) + "-us14")
_add("brevo-api-key", f"xkeysib-{rand(HEX, 64)}-{rand(AN, 16)}")
_add("discord-bot-token", f"M{rand(URLSAFE, 23)}.{rand(URLSAFE, 6)}.{rand(URLSAFE, 27)}")
_add(
    "discord-webhook-url",
    f"https://discord.com/api/webhooks/{rand(string.digits, 18)}/{rand(URLSAFE, 68)}",
)
_add("telegram-bot-token", f"{rand(string.digits, 10)}:AA{rand(URLSAFE, 33)}")
_add("twitter-bearer-token", "AAAAAAAAAAAAAAAAAAAAA" + rand(AN, 80))
_add("npm-access-token", "npm_" + rand(AN, 36))
_add("pypi-upload-token", "pypi-AgEIcHlwaS5vcmc" + rand(URLSAFE, 70))
_add("testpypi-upload-token", "pypi-AgENdGVzdC5weXBpLm9yZw" + rand(URLSAFE, 70))
_add("rubygems-api-key", "rubygems_" + rand(HEX, 48))
_add("nuget-api-key", "oy2" + rand("abcdefghijklmnopqrstuvwxyz0123456789", 43))
_add("clojars-api-token", "CLOJARS_" + rand("abcdefghijklmnopqrstuvwxyz0123456789", 60))
_add("dockerhub-pat", "dckr_pat_" + rand(URLSAFE, 27))
_add("postman-api-key", f"PMAK-{rand(HEX, 24)}-{rand(HEX, 34)}")
_add("linear-api-key", "lin_api_" + rand(AN, 40))
_add("notion-integration-token", "ntn_" + rand(string.digits, 11) + rand(AN, 35))
_add("figma-pat", "figd_" + rand(URLSAFE, 40))
_add("airtable-pat", f"pat{rand(AN, 14)}.{rand(HEX, 64)}")
_add("typeform-token", "tfp_" + rand(AN, 59))
_add("prefect-api-key", "pnu_" + rand(AN, 36))
_add("harness-pat", f"pat.{rand(AN, 22)}.{rand(HEX, 24)}.{rand(AN, 20)}")
_add("octopus-deploy-api-key", "API-" + rand(UP, 26))
_add("sentry-dsn", rand(HEX, 32), "dsn: https://{s}@o123456.ingest.sentry.io/4504\n")
_add("sentry-auth-token", "sntrys_" + rand(AN, 80))
_add("openai-api-key", f"sk-{rand(AN, 20)}T3BlbkFJ{rand(AN, 20)}")
_add("openai-project-key", "sk-proj-" + rand(URLSAFE, 120))
_add("anthropic-api-key", "sk-ant-api03-" + rand(URLSAFE, 93) + "AA")
_add("huggingface-token", "hf_" + rand(AN, 34))
_add("groq-api-key", "gsk_" + rand(AN, 52))
_add("replicate-api-token", "r8_" + rand(AN, 37))
_add("perplexity-api-key", "pplx-" + rand(AN, 48))
_add("xai-api-key", "xai-" + rand(AN, 80))
_add(
    "heroku-api-key",
    f"{rand(HEX, 8)}-{rand(HEX, 4)}-{rand(HEX, 4)}-{rand(HEX, 4)}-{rand(HEX, 12)}",
    "HEROKU_API_KEY={s}\n",
)
_add("heroku-api-key-v2", "HRKU-" + rand(URLSAFE, 60))
_add("digitalocean-token", "dop_v1_" + rand(HEX, 64))
_add("datadog-api-key", rand(HEX, 32), "DD_API_KEY={s}\n")
_add("newrelic-user-api-key", "NRAK-" + rand(UP, 27))
_add("newrelic-insert-key", "NRII-" + rand(URLSAFE, 32))
_add("newrelic-browser-key", "NRJS-" + rand(HEX, 19))
_add("vault-service-token", "hvs." + rand(URLSAFE, 90))
_add("terraform-cloud-token", f"{rand(AN, 14)}.atlasv1.{rand(URLSAFE, 67)}")
_add("doppler-token", "dp.pt." + rand(AN, 43))
_add("okta-api-token", "00" + rand(URLSAFE, 40), "OKTA_API_TOKEN={s}\n")
_add("databricks-token", "dapi" + rand(HEX, 32))
_add("cloudflare-api-token", rand(URLSAFE, 40), "CLOUDFLARE_API_TOKEN={s}\n")
_add("cloudflare-origin-ca-key", f"v1.0-{rand(HEX, 24)}-{rand(HEX, 146)}")
_add("grafana-service-account-token", f"glsa_{rand(AN, 32)}_{rand(HEX, 8)}")
_add("grafana-cloud-token", "glc_" + rand(B64, 120))
_add("dynatrace-api-token", f"dt0c01.{rand(UP, 24)}.{rand(UP, 64)}")
_add("pulumi-access-token", "pul-" + rand(HEX, 40))
_add("supabase-token", "sbp_" + rand(HEX, 40))
_add("planetscale-token", "pscale_tkn_" + rand(AN, 43))
_add("tailscale-key", f"tskey-auth-{rand(AN, 12)}-{rand(AN, 30)}")
_add("render-api-key", "rnd_" + rand(AN, 32))
_add("mapbox-secret-token", f"sk.eyJ{rand(URLSAFE, 60)}.{rand(URLSAFE, 22)}")
_add("onepassword-service-account-token", "ops_eyJ" + rand(B64, 300))
_add("age-secret-key", "AGE-SECRET-KEY-1" + rand("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58))
_add("infracost-api-key", "ico-" + rand(AN, 32))
_add("jwt", jwt())
_add("private-key-pem", _pem("RSA PRIVATE KEY"), "{s}\n")
_add("openssh-private-key", _pem("OPENSSH PRIVATE KEY"), "{s}\n")
_add("pgp-private-key", _pem("PGP PRIVATE KEY BLOCK"), "{s}\n")
_add(
    "putty-private-key",
    "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPublic-Lines: 2\n"
    + rand(B64, 64)
    + f"\nPrivate-Lines: 1\n{rand(B64, 44)}\nPrivate-MAC: {rand(HEX, 64)}",
    "{s}\n",
)
_add(
    "gcp-service-account-private-key",
    _pem("PRIVATE KEY").replace("\n", "\\n"),
    '{{"type": "service_account", "private_key": "{s}", "client_email": "x"}}\n',
)
_add("postgres-url-password", rand(AN, 16), "postgres://app:{s}@db.internal:5432/app\n")
_add("mysql-url-password", rand(AN, 16), "mysql://root:{s}@10.0.0.5/db\n")
_add(
    "mongodb-url-password",
    rand(AN, 16),
    "mongodb+srv://admin:{s}@cluster0.abcde.mongodb.net/test\n",
)
_add("redis-url-password", rand(AN, 16), "redis://:{s}@cache:6379/0\n")
_add("amqp-url-password", rand(AN, 16), "amqps://guest:{s}@mq.internal/vhost\n")
_add("url-password", rand(AN, 16), "ftp://deploy:{s}@files.internal/\n")
_add(
    "connection-string-password",
    rand(AN, 16),
    "Server=tcp:db.internal,1433;Database=app;User ID=sa;Password={s};\n",
)
_add("generic-password", "hunter2x!Q", '{{"password": "{s}"}}\n')
_add("generic-secret", rand(AN, 32), 'api_key: "{s}"\n')
_add("dotenv-secret", rand(AN, 12) + "9", "SOME_SERVICE_CREDENTIALS={s}\n")
_add("http-bearer-token", rand(AN, 40), "Authorization: Bearer {s}\n")
_add("http-basic-auth", _basic(), "Authorization: Basic {s}\n")
