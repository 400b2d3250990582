#!/usr/bin/env python3
"""Offline checks of the deploy kit, run by scripts/test.sh.

- hadolint on the Dockerfile;
- the Compose file: every service present, run as `kart serve <name>`, with
  a health check, started after the migration and topic-init steps, the
  gateway published on 8080, every topic Kart uses created by the init step;
- the Kubernetes manifests: base and every overlay rendered with
  `kubectl kustomize` and validated with `kubernetes-validate --strict`;
  every service with a Deployment (probes, resources), Service, PDB and HPA;
  a migration Job; an Ingress to the gateway; no Secret committed;
- config keys: every variable `kart env <service>` says a deployment must
  set is set, in Compose and in each Kubernetes rendering.

Usage: deploy/check.py  (KART_BIN, HADOLINT, KUBERNETES_VALIDATE, KUBECTL
may point at the tools; defaults: target/debug/kart and the PATH).
"""

import os
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KART = os.environ.get("KART_BIN", os.path.join(ROOT, "target/debug/kart"))
HADOLINT = os.environ.get("HADOLINT", "hadolint")
KUBERNETES_VALIDATE = os.environ.get("KUBERNETES_VALIDATE", "kubernetes-validate")
KUBECTL = os.environ.get("KUBECTL", "kubectl")
OVERLAYS = ["base", "overlays/dev", "overlays/production"]

failures = []
checks = 0


def check(condition, message):
    global checks
    checks += 1
    if not condition:
        failures.append(message)


def read(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return f.read()


def run(args, **kwargs):
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, **kwargs)


def service_names():
    source = read("crates/kart/src/services.rs")
    block = re.search(r"pub const SERVICE_NAMES: &\[&str\] = &\[(.*?)\];", source, re.S)
    return re.findall(r'"(\w+)"', block.group(1))


def topic_names():
    source = read("crates/contracts/src/topics.rs")
    return re.findall(r'pub const \w+: &str = "([^"]+)";', source)


def required_env(service):
    result = run([KART, "env", service])
    if result.returncode != 0:
        sys.exit(f"`kart env {service}` failed: {result.stderr.strip()}")
    return [line for line in result.stdout.splitlines() if line]


def check_dockerfile():
    result = run([HADOLINT, "deploy/Dockerfile"])
    check(result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}")


def check_compose(services, topics):
    compose = yaml.safe_load(read("deploy/compose.yaml"))["services"]
    init = " ".join(compose.get("kafka-init", {}).get("command", []))
    for topic in topics:
        check(topic in init, f"compose: kafka-init does not create {topic}")
    migrate = compose.get("migrate", {})
    check(migrate.get("command") == ["migrate"], "compose: migrate step runs `kart migrate`")
    check("KART__DATABASE__URL" in migrate.get("environment", {}), "compose: migrate has the database URL")
    for name in services:
        service = compose.get(name)
        check(service is not None, f"compose: no service {name}")
        if service is None:
            continue
        check(service.get("command") == ["serve", name], f"compose: {name} runs `kart serve {name}`")
        env = service.get("environment", {})
        for key in required_env(name):
            check(env.get(key) not in (None, ""), f"compose: {name} does not set {key}")
        check(str(env.get("KART_HEALTHCHECK_URL", "")).endswith("/readyz"), f"compose: {name} health check")
        depends = service.get("depends_on", {})
        for step in ("migrate", "kafka-init"):
            check(
                depends.get(step, {}).get("condition") == "service_completed_successfully",
                f"compose: {name} starts after {step}",
            )
    check("8080:8080" in compose.get("gateway", {}).get("ports", []), "compose: gateway published on 8080")


def render(overlay):
    result = run([KUBECTL, "kustomize", f"deploy/k8s/{overlay}"])
    check(result.returncode == 0, f"kustomize {overlay}: {result.stderr}")
    return result.stdout


def check_kubernetes(services):
    for overlay in OVERLAYS:
        rendered = render(overlay)
        if not rendered:
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(rendered)
            path = f.name
        result = run([KUBERNETES_VALIDATE, "--strict", "--quiet", path])
        os.unlink(path)
        check(result.returncode == 0, f"kubernetes-validate {overlay}:\n{result.stdout}{result.stderr}")

        objects = [o for o in yaml.safe_load_all(rendered) if o]
        by_kind = {}
        for o in objects:
            by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
        check("Secret" not in by_kind, f"{overlay}: a Secret is committed")
        config = next(iter(by_kind.get("ConfigMap", {}).values()), {}).get("data", {})
        check("kart-migrate" in by_kind.get("Job", {}), f"{overlay}: no migration Job")
        ingress = next(iter(by_kind.get("Ingress", {}).values()), None)
        check(
            ingress is not None and "gateway" in yaml.safe_dump(ingress),
            f"{overlay}: no Ingress to the gateway",
        )
        for name in services:
            for kind in ("Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"):
                check(name in by_kind.get(kind, {}), f"{overlay}: no {kind} for {name}")
            deployment = by_kind.get("Deployment", {}).get(name)
            if deployment is None:
                continue
            container = deployment["spec"]["template"]["spec"]["containers"][0]
            check(container.get("args") == ["serve", name], f"{overlay}: {name} runs `kart serve {name}`")
            check(
                container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz",
                f"{overlay}: {name} readiness probe",
            )
            check(
                container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz",
                f"{overlay}: {name} liveness probe",
            )
            check("limits" in container.get("resources", {}), f"{overlay}: {name} resources")
            names = {e["name"] for e in container.get("env", [])} | set(config)
            for key in required_env(name):
                check(key in names, f"{overlay}: {name} does not set {key}")


def main():
    services = service_names()
    check(len(services) == 8, f"expected 8 services, found {services}")
    check_dockerfile()
    check_compose(services, topic_names())
    check_kubernetes(services)
    for failure in failures:
        print(f"FAILED: {failure}")
    print(f"deploy checks: {checks - len(failures)} of {checks} hold")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
