"""FP-S013 in the tracked deployment files beyond Compose and alembic.ini: a Kubernetes container's env: value, a
uWSGI ini's env = NAME=value, and any INI or CFG file's password = ... or credentialed URL. The same rule as
elsewhere keeps placeholders, references, a Secret read through valueFrom and a URL to localhost quiet; a secret key
in a manifest stays FP-S009's; test tools' INI files, development files, untracked files and the files flaskprod
wrote (its header on them) are not read."""

from __future__ import annotations

import base64
import json
import textwrap
from pathlib import Path

from flaskprod.render.yamlfile import generated_header
from tests import test_check
from tests.test_check import PROD, audit, write
from tests.test_check_committed import committed, found

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

WHOEVER = "whoever can read the repository, or its history, has it"
MANIFEST = """\
apiVersion: v1
kind: Service
metadata:
  name: shop
spec:
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
spec:
  template:
    spec:
      initContainers:
        - name: migrate
          image: shop:1.2
          env:
            - name: DATABASE_URL
              value: postgresql://shop:r3alPass@db.internal/shop
      containers:
        - name: app
          image: shop:1.2
          env:
            - name: SECRET_KEY
              value: "9f8e7d6c5b4a39281706f5e4d3c2b1a0"
            - name: MAIL_PASSWORD
              valueFrom:
                secretKeyRef: {name: shop, key: MAIL_PASSWORD}
            - name: API_TOKEN
              value: changeme
            - name: CACHE_URL
              value: redis://:devpass@localhost:6379/0
            - name: STRIPE_API_KEY
              value: "rk-9a8b7c6d5e4f3a2b"
            - name: FLASK_ITEMS_PER_PAGE
              value: "20"
"""
UWSGI = """\
[uwsgi]
module = app:app
env = SECRET_KEY=9f8e7d6c5b4a39281706f5e4d3c2b1a0
env = DATABASE_URL=postgresql://shop:r3alPass@db.internal/shop
env = REDIS_URL=redis://localhost:6379/0
env = MAIL_PASSWORD=$(MAIL_PASSWORD)
env = FLASK_ITEMS_PER_PAGE=20
"""
SETTINGS = """\
[mail]
server = smtp.example.com
username = shop
password = hunter2

[database]
; url = postgresql://shop:old@db/shop
url = postgresql://shop:r3alPass@db.internal/shop
replica = postgresql://shop:${DB_PASSWORD}@replica/shop
"""


def manifest_hint(name: str) -> str:
    return (
        f"keep the value in a Secret created in the cluster and read it with valueFrom.secretKeyRef (- name: {name}, "
        f"valueFrom: {{secretKeyRef: {{name: app, key: {name}}}}}), then change the secret: the old one stays in the "
        "repository's history"
    )


def ini_hint(name: str) -> str:
    return (
        f"leave {name} out of the file and give it to the app from the environment where it runs (a variable the "
        "server or its unit sets, a file kept out of the repository), then change the secret: the old one stays in "
        "the repository's history"
    )


def written(name: str, what: str, file: str) -> str:
    return f"{name} {what} written in {file}, which git tracks: {WHOEVER}"


def test_values_in_a_tracked_kubernetes_manifests_env_are_found(project: Path) -> None:
    committed(project, {"app.py": PROD, "k8s/deployment.yaml": MANIFEST})
    result = audit(project, {})
    messages = result.only("FP-S013")
    file = "k8s/deployment.yaml"
    assert found(messages) == [
        (f"{file}:19", written("DATABASE_URL", "has a password", file), manifest_hint("DATABASE_URL")),
        (f"{file}:34", written("STRIPE_API_KEY", "is a string", file), manifest_hint("STRIPE_API_KEY")),
    ]
    assert "r3alPass" not in str(messages) and "rk-9a8b" not in str(messages)
    # The secret key is FP-S009's, reported there once.
    assert [m["obj"] for m in result.only("FP-S009")] == [f"{file}:25"]


def test_a_uwsgi_inis_env_and_other_ini_and_cfg_files_are_read(project: Path) -> None:
    committed(project, {"app.py": PROD, "uwsgi.ini": UWSGI, "deploy/settings.cfg": SETTINGS})
    messages = audit(project, {}).only("FP-S013")
    assert sorted(found(messages)) == [
        ("deploy/settings.cfg:4", written("password", "is a string", "deploy/settings.cfg"), ini_hint("password")),
        ("deploy/settings.cfg:8", written("url", "has a password", "deploy/settings.cfg"), ini_hint("url")),
        ("uwsgi.ini:3", written("SECRET_KEY", "is a string", "uwsgi.ini"), ini_hint("SECRET_KEY")),
        ("uwsgi.ini:4", written("DATABASE_URL", "has a password", "uwsgi.ini"), ini_hint("DATABASE_URL")),
    ]
    assert "r3alPass" not in str(messages) and "hunter2" not in str(messages)


def test_generated_development_test_and_untracked_files_are_quiet(project: Path) -> None:
    # Written by `flaskprod build` (its header): not among the project's files, as a generated compose.yaml is not.
    generated = "".join(f"# {line}\n" for line in generated_header("shop").splitlines()) + MANIFEST
    committed(
        project,
        {
            "app.py": PROD,
            "deploy/kubernetes/deployment.yaml": generated,
            "k8s/dev/deployment.yaml": MANIFEST,
            "uwsgi-dev.ini": UWSGI,
            "pytest.ini": "[pytest]\nenv =\n    DATABASE_URL=postgresql://ci:cipass@db/ci\n",
            "tox.ini": "[testenv]\nsetenv =\n    DATABASE_URL=postgresql://ci:cipass@db/ci\n",
        },
    )
    write(project, {"uwsgi.ini": UWSGI, "ops/settings.cfg": SETTINGS})  # written, never added
    result = audit(project, {})
    assert result.only("FP-S013") == [], result.only("FP-S013")


def test_a_cfg_the_app_loads_as_python_is_reported_once(project: Path) -> None:
    app = PROD.replace("Production(app)", 'app.config.from_pyfile("settings.cfg")\nProduction(app)')
    committed(project, {"app.py": app, "settings.cfg": 'MAIL_PASSWORD = "hunter2-mail"\n'})
    assert [m["obj"] for m in audit(project, {}).only("FP-S013")] == ["settings.cfg:1"]


STORED = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: shop
data:
  FLASK_ITEMS_PER_PAGE: "20"
  DATABASE_URL: postgresql://shop:r3alPass@db.internal/shop
  MAIL_SERVER: smtp.example.com
---
apiVersion: v1
kind: Secret
metadata:
  name: shop
type: Opaque
stringData:
  db-password: r3alPass
  api: ""
  mail-password: changeme
  SECRET_KEY: 9f8e7d6c5b4a39281706f5e4d3c2b1a0
data:
  stripe: cmstOWE4YjdjNmQ1ZTRmM2EyYg==
  notbase64: "%%%"
---
apiVersion: bitnami.com/v1alpha1
kind: SealedSecret
metadata:
  name: sealed
spec:
  encryptedData:
    db-password: AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq
"""
KUSTOMIZATION = """\
resources: [deployment.yaml]
secretGenerator:
  - name: shop
    literals:
      - DB_PASSWORD=r3alPass
      - MAIL_USERNAME=
      - API_TOKEN=${API_TOKEN}
    envs: [prod.env]
"""


def stored_hint() -> str:
    return (
        "keep Secrets out of the repository: create it in the cluster (kubectl create secret generic app "
        "--from-env-file=FILE, with FILE kept out of git) or commit it encrypted (Sealed Secrets, SOPS), then change "
        "the secret: the old one stays in the repository's history"
    )


def test_a_committed_configmaps_data_secrets_values_and_generator_literals_are_found(project: Path) -> None:
    """A ConfigMap's data judged by the name, as an env: value is; every value of a Secret (stringData:, base64
    data:) and of a secretGenerator's literals, whatever its key, is a secret; placeholders, references, a secret key
    (FP-S009's) and a SealedSecret's encrypted data are not reported."""
    committed(project, {"app.py": PROD, "k8s/config.yaml": STORED, "k8s/kustomization.yaml": KUSTOMIZATION})
    messages = audit(project, {}).only("FP-S013")
    config, kustomization = "k8s/config.yaml", "k8s/kustomization.yaml"
    assert sorted(found(messages)) == [
        (f"{config}:16", written("db-password", "is a Secret's value", config), stored_hint()),
        (f"{config}:21", written("stripe", "is a Secret's value", config), stored_hint()),
        (f"{config}:7", written("DATABASE_URL", "has a password", config), manifest_hint("DATABASE_URL")),
        (f"{kustomization}:5", written("DB_PASSWORD", "is a Secret's value", kustomization), stored_hint()),
    ]
    assert "r3alPass" not in str(messages) and "rk-9a8b" not in str(messages)


# A committed Secret often carries the app's plain settings beside its secrets (kubectl create secret
# --from-env-file=.env): those are no secret; a value is, under a key named for one or by its own look.
PLAIN_AND_SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: shop
stringData:
  APP_ENV: production
  PORT: "8080"
  LOG_LEVEL: info
  FEATURE_SIGNUP: "true"
  MAIL_SERVER: smtp.example.com
  REDIS_URL: redis://cache.internal:6379/0
  api-key: hunter2-api
  mailPassword: hunter2-mail
  DATABASE_URL: postgresql://shop:r3alPass@db.internal/shop
  webhook: Zk3p9QaL2xVb7Rt5Yw1Nc8Hd4
  tls.key: |
    -----BEGIN PRIVATE KEY-----
    MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7
    -----END PRIVATE KEY-----
  app.env: |
    FLASK_ENV=production
    MAIL_PASSWORD=hunter2-file
  plain.env: |
    FLASK_ENV=production
    WORKERS=4
data:
  REGION: ZXUtd2VzdC0x
  signing: OWY4ZTdkNmM1YjRhMzkyODE3MDZmNWU0ZDNjMmIxYTA=
---
apiVersion: v1
kind: Secret
metadata:
  name: shop-tls
type: kubernetes.io/tls
stringData:
  tls.crt: |
    -----BEGIN CERTIFICATE-----
    MIIBczCCARmgAwIBAgIUAKFGWi3HA7VNMBRRApqWnHBWNjEwCgYIKoZIzj0EAwIw
    DzENMAsGA1UEAwwEc2hvcDAeFw0yNjEyMDgwMzI1NDhaFw0yNjEyMDkwMzI1NDha
    MA8xDTALBgNVBAMMBHNob3AwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATbtqr2
    wpB4oUxdWrqTCuyi4WcAwIVC5Vohwx38zFCYQaHmgN6I61JX5oJiJZPZUgmUqHhw
    aKB4Riw6wf3yKZXto1MwUTAdBgNVHQ4EFgQUmnahZHujCEzO706YkKWsee/PYFkw
    HwYDVR0jBBgwFoAUmnahZHujCEzO706YkKWsee/PYFkwDwYDVR0TAQH/BAUwAwEB
    /zAKBggqhkjOPQQDAgNIADBFAiEAoO1bEGsxH2WEjgqv8vjOVuZN8QkyCF2BTF6y
    cUtF2zICIFu1AvFRQZGMtrMCfpZv+Om5yWPbDGqfsn9bC8KcXEC/
    -----END CERTIFICATE-----
"""
PLAIN_GENERATOR = """\
secretGenerator:
  - name: shop
    literals:
      - APP_ENV=production
      - WORKERS=4
      - REDIS_PASSWORD=r3alRedis
"""


def test_a_secrets_plain_settings_are_quiet_and_its_credentials_found(project: Path) -> None:
    """APP_ENV: production, PORT: "8080" in a Secret are no leak: a Secret's value is reported when its key names a
    secret (the rule env: values follow, with api-key and mailPassword spelled as Kubernetes keys are) or when it is
    a credential by its look whatever its key (a URL with a password, a long random token, a private key, a file of
    settings holding one); a certificate is public."""
    files = {"app.py": PROD, "k8s/secret.yaml": PLAIN_AND_SECRET, "k8s/kustomization.yaml": PLAIN_GENERATOR}
    committed(project, files)
    messages = audit(project, {}).only("FP-S013")
    secret, kustomization = "k8s/secret.yaml", "k8s/kustomization.yaml"
    reported = [(m["obj"], m["text"]) for m in messages]
    assert sorted(reported) == sorted(
        [
            (f"{secret}:{line}", written(name, "is a Secret's value", secret))
            for line, name in [(12, "api-key"), (13, "mailPassword"), (14, "DATABASE_URL"), (15, "webhook"),
                               (16, "tls.key"), (20, "app.env"), (28, "signing")]
        ]
        + [(f"{kustomization}:6", written("REDIS_PASSWORD", "is a Secret's value", kustomization))]
    ), reported
    assert {m["hint"] for m in messages} == {stored_hint()}


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def docker_config(registries: dict[str, dict[str, str]]) -> str:
    return json.dumps({"auths": registries})


# A long random value may hold "xxx", "todo" or "your" by chance (base64 writes any three letters once in 30,000):
# a fill-in word inside such a run is no placeholder, but one that is the value, or stands as a word in it, is.
PRIVATE_KEY = """\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCvv/JlDF3msIY3
9KgXagJ+WWCFtBA4P0exnFu8qOFYC40RYwgh7s3FGJpmd0NC8JkAy2DX7vw+NXxQ
+1sgZcpmiQe/blm1II2J/eEcPwHA81V8nWNGXUngPc9tIuq6i7SX3X329P/Lh20A
WbAqs0V5S0VYOse0XiIJTgrLTur6zCm4/p4AlcRMkwMWA9HDzEzxXxT2fQtoDo==
-----END PRIVATE KEY-----
"""
# Empty, or references a CI job fills in before kubectl apply.
TEMPLATED_REGISTRIES = {
    "ghcr.io": {"username": "shop", "password": ""},
    "quay.io": {"password": "${QUAY_PASSWORD}"},
    "docker.io": {"auth": b64("shop:")},
    "gcr.io": {"auth": "${GCR_AUTH}"},
    "registry.example.com": {"auth": b64("shop:${REGISTRY_PASSWORD}"), "identitytoken": "<token>"},
}
# What `kubectl create secret docker-registry` (or basic-auth, ssh-auth) writes, committed: the registry's password
# as .dockerconfigjson's JSON (base64 in data:, text in stringData:), a user:password auth, an identity token.
PULL_SECRETS = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: ghcr
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: {b64(docker_config({"ghcr.io": {"username": "shop", "password": "r3alRegistry"}}))}
---
apiVersion: v1
kind: Secret
metadata:
  name: registry
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{docker_config({"registry.example.com": {"auth": b64("shop:r3alRegistry")}})}'
---
apiVersion: v1
kind: Secret
metadata:
  name: acr
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: |
    {{
      "auths": {{
        "shop.azurecr.io": {{"identitytoken": "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiI3YTk4ZjJjNCJ9.Qk3p9QaL2"}}
      }}
    }}
---
apiVersion: v1
kind: Secret
metadata:
  name: legacy
type: kubernetes.io/dockercfg
data:
  .dockercfg: {b64(json.dumps({"quay.io": {"auth": b64("shop+robot:r3alRobot"), "email": "ops@example.com"}}))}
---
apiVersion: v1
kind: Secret
metadata:
  name: templates
type: kubernetes.io/dockerconfigjson
stringData:
  .dockerconfigjson: '{docker_config(TEMPLATED_REGISTRIES)}'
---
apiVersion: v1
kind: Secret
metadata:
  name: basic
type: kubernetes.io/basic-auth
stringData:
  username: shop
  password: r3alBasic
---
apiVersion: v1
kind: Secret
metadata:
  name: deploy-key
type: kubernetes.io/ssh-auth
data:
  ssh-privatekey: {b64(PRIVATE_KEY)}
"""


def pull_hint() -> str:
    return (
        "keep Secrets out of the repository: create the pull Secret in the cluster from the config `docker login` "
        "wrote (kubectl create secret generic regcred --from-file=.dockerconfigjson=$HOME/.docker/config.json "
        "--type=kubernetes.io/dockerconfigjson) or commit it encrypted (Sealed Secrets, SOPS), then change the "
        "password or token: the old one stays in the repository's history"
    )


def test_a_committed_pull_secrets_registry_credentials_are_found(project: Path) -> None:
    """A .dockerconfigjson (or the older .dockercfg) is JSON, which reads as a template ({...}) to the rule for a
    Secret's value: its auths.<registry> password, auth (base64 user:password) and identity token are read, and
    reported by registry; an empty one or a reference is not. A basic-auth Secret's password and an ssh-auth
    Secret's key are found as any Secret's."""
    committed(project, {"app.py": PROD, "k8s/pull.yaml": PULL_SECRETS})
    messages = audit(project, {}).only("FP-S013")
    file = "k8s/pull.yaml"
    assert sorted(found(messages)) == sorted([
        (f"{file}:7", written(".dockerconfigjson", "has the password or token of ghcr.io", file), pull_hint()),
        (f"{file}:15", written(".dockerconfigjson", "has the password or token of registry.example.com", file),
         pull_hint()),
        (f"{file}:23", written(".dockerconfigjson", "has the password or token of shop.azurecr.io", file),
         pull_hint()),
        (f"{file}:36", written(".dockercfg", "has the password or token of quay.io", file), pull_hint()),
        (f"{file}:53", written("password", "is a Secret's value", file), stored_hint()),
        (f"{file}:61", written("ssh-privatekey", "is a Secret's value", file), stored_hint()),
    ]), found(messages)
    assert "r3al" not in str(messages)


CHANCE_AND_FILL_IN = f"""\
apiVersion: v1
kind: Secret
metadata:
  name: shop
stringData:
  webhook: Zk3p9QaL2xxxVb7Rt5Yw1Nc8Hd4
  signing: a8ToDoQ3vZ9kLp2Rw7Xc4Nb6Mj1
  tls.key: |
{textwrap.indent(PRIVATE_KEY, "    ")}  api-key: your-api-key-here
  stripe: sk_live_xxxxxxxxxxxxxxxxxxxxxxxx
  session-token: change-me-in-production
  db-password: TODO
  mail-password: fake_9f8e7d6c5b4a3928
  aws: AKIAIOSFODNN7EXAMPLE
  sample.key: |
    -----BEGIN PRIVATE KEY-----
    ...
    -----END PRIVATE KEY-----
  short.key: |
    -----BEGIN RSA PRIVATE KEY-----
    MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun...
    -----END RSA PRIVATE KEY-----
"""


def test_a_fill_in_word_inside_a_random_value_is_chance_not_a_placeholder(project: Path) -> None:
    """Zk3p9QaL2xxxVb7..., a8ToDoQ3... and a private key whose base64 holds xXx and toDo are secrets; your-api-key-here,
    sk_live_xxxx..., change-me-in-production, TODO, fake_..., AWS's documented EXAMPLE key and a key written as ...
    stay placeholders."""
    committed(project, {"app.py": PROD, "k8s/secret.yaml": CHANCE_AND_FILL_IN})
    messages = audit(project, {}).only("FP-S013")
    file = "k8s/secret.yaml"
    assert sorted(found(messages)) == [
        (f"{file}:{line}", written(name, "is a Secret's value", file), stored_hint())
        for line, name in [(6, "webhook"), (7, "signing"), (8, "tls.key")]
    ], found(messages)
