#!/usr/bin/python3
"""Checks deploy/kubernetes/*.yaml against each other and against the Dockerfile's image.

    /usr/bin/python3 bench/kubernetes_check.py deploy/kubernetes EXPOSED_PORT IMAGE_UID

bench/dockerfile_steps.sh runs it: it prints one line per check on stderr ("ok ..." or
"FAILED ..."), and on stdout bash assignments (K8S_*) describing the serving container, which
that script uses to run the image the way the Deployment would.  Exits 1 when a check fails.
Needs Debian's python3-yaml.
"""
import shlex
import sys

import yaml

failures = []


def check(ok, what):
    print(("ok      " if ok else "FAILED  ") + what, file=sys.stderr)
    if not ok:
        failures.append(what)
    return ok


def load(directory, name):
    path = f"{directory}/{name}"
    with open(path, encoding="utf-8") as f:
        documents = [d for d in yaml.safe_load_all(f) if d is not None]
    check(len(documents) == 1, f"{path} parses as one YAML document (kind {documents[0].get('kind')})")
    return documents[0]


def flag(args, name, default):
    """The value after --name in args (serve.lua's flags), else the default."""
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            return args[i + 1]
    return default


def cpu_cores(quantity):
    quantity = str(quantity)
    return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def probe_port(probe, container):
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p.get("name") == port)


def main():
    directory, exposed, image_uid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    deployment = load(directory, "deployment.yaml")
    service = load(directory, "service.yaml")
    hpa = load(directory, "hpa.yaml")
    check(deployment["apiVersion"] == "apps/v1" and deployment["kind"] == "Deployment", "deployment.yaml is an apps/v1 Deployment")
    check(service["apiVersion"] == "v1" and service["kind"] == "Service", "service.yaml is a v1 Service")
    check(hpa["apiVersion"] == "autoscaling/v2" and hpa["kind"] == "HorizontalPodAutoscaler",
          "hpa.yaml is an autoscaling/v2 HorizontalPodAutoscaler")

    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    check(all(labels.get(k) == v for k, v in deployment["spec"]["selector"]["matchLabels"].items()),
          "the Deployment's selector matches its pod labels")
    spec = pod["spec"]
    container = next(c for c in spec["containers"] if c["name"] == "serve")
    args = [str(a) for a in container.get("args", [])]
    check("command" not in container, "the container keeps the image's ENTRYPOINT (no command:)")
    port = int(flag(args, "--port", "8000"))
    container_ports = [p["containerPort"] for p in container["ports"]]
    check(container_ports == [port] and port == exposed,
          f"containerPort {container_ports} = serve.lua's --port {port} = the Dockerfile's EXPOSE {exposed}")

    live, ready = container["livenessProbe"], container["readinessProbe"]
    check(live["httpGet"]["path"] == "/v2/health/live" and probe_port(live, container) == port,
          f"livenessProbe: GET /v2/health/live on {probe_port(live, container)}")
    check(ready["httpGet"]["path"] == "/v2/health/ready" and probe_port(ready, container) == port,
          f"readinessProbe: GET /v2/health/ready on {probe_port(ready, container)}")
    check(ready.get("periodSeconds", 10) <= 5, f"readinessProbe period {ready.get('periodSeconds', 10)} s <= 5 s")
    startup = container.get("startupProbe")
    if startup:
        check(probe_port(startup, container) == port, "startupProbe asks the serving port")

    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    check(len(pre_stop) == 2 and pre_stop[0] == "sleep" and pre_stop[1].isdigit(),
          f"preStop runs sleep N: {pre_stop}")
    sleep_s = int(pre_stop[1])
    drain_ms = int(flag(args, "--drain-delay-ms", "5000"))
    shutdown_ms = int(flag(args, "--shutdown-timeout-ms", "25000"))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    need = sleep_s + drain_ms / 1000 + shutdown_ms / 1000
    check(shutdown_ms > 0, "--shutdown-timeout-ms is not 0 (0 would mean no bound)")
    check(need <= grace, f"preStop sleep {sleep_s} s + --drain-delay-ms {drain_ms} + --shutdown-timeout-ms "
          f"{shutdown_ms} = {need:g} s <= terminationGracePeriodSeconds {grace}")

    resources = container["resources"]
    for kind in ("requests", "limits"):
        check("cpu" in resources.get(kind, {}) and "memory" in resources.get(kind, {}), f"resources.{kind} has cpu and memory")
    threads = flag(args, "--threads", None)
    cpu_limit = cpu_cores(resources["limits"]["cpu"])
    check(threads is not None and int(threads) <= max(1, cpu_limit),
          f"--threads {threads} is set and within the CPU limit {resources['limits']['cpu']}")

    pod_security = spec.get("securityContext", {})
    security = {**pod_security, **container.get("securityContext", {})}
    uid, gid = security.get("runAsUser", image_uid), security.get("runAsGroup", 0)
    check(security.get("runAsNonRoot") is True and uid != 0, f"runAsNonRoot with uid {uid}")
    check(uid == image_uid, f"runAsUser {uid} is the image's USER {image_uid}")
    models = flag(args, "--models", "models")
    mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
    check(models in mounts, f"--models {models} is a mounted volume")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    check(all(m["name"] in volumes for m in container.get("volumeMounts", [])), "every volumeMount names a volume")
    for init in spec.get("initContainers", []):
        check(all(m["name"] in volumes for m in init.get("volumeMounts", [])), f"init container {init['name']}'s mounts name volumes")

    check(all(labels.get(k) == v for k, v in service["spec"]["selector"].items()), "the Service selects the pods")
    target = service["spec"]["ports"][0]["targetPort"]
    target_port = target if isinstance(target, int) else next(
        (p["containerPort"] for p in container["ports"] if p.get("name") == target), None)
    check(target_port == port, f"the Service's targetPort {target} is containerPort {port}")

    ref = hpa["spec"]["scaleTargetRef"]
    check(ref["kind"] == "Deployment" and ref["name"] == deployment["metadata"]["name"],
          f"the HPA scales Deployment {ref['name']}")
    cpu_metrics = [m for m in hpa["spec"]["metrics"]
                   if m["type"] == "Resource" and m["resource"]["name"] == "cpu"
                   and m["resource"]["target"]["type"] == "Utilization"]
    check(len(cpu_metrics) == 1, "the HPA scales on CPU utilisation (of the cpu request above)")
    check(hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"], "minReplicas <= maxReplicas")

    out = {
        "K8S_ARGS": "(" + " ".join(shlex.quote(a) for a in args) + ")",
        "K8S_UID": str(uid), "K8S_GID": str(gid), "K8S_FS_GROUP": str(pod_security.get("fsGroup", "")),
        "K8S_READONLY_ROOT": "1" if security.get("readOnlyRootFilesystem") else "0",
        "K8S_NO_NEW_PRIVS": "0" if security.get("allowPrivilegeEscalation", True) else "1",
        "K8S_DROP_ALL": "1" if "ALL" in security.get("capabilities", {}).get("drop", []) else "0",
        "K8S_PRESTOP": "(" + " ".join(shlex.quote(a) for a in pre_stop) + ")",
        "K8S_GRACE": str(grace), "K8S_PORT": str(port), "K8S_MODELS": shlex.quote(models),
        "K8S_DRAIN_MS": str(drain_ms), "K8S_SHUTDOWN_MS": str(shutdown_ms),
        "K8S_READY_PATH": shlex.quote(ready["httpGet"]["path"]), "K8S_LIVE_PATH": shlex.quote(live["httpGet"]["path"]),
    }
    for k, v in out.items():
        print(f"{k}={v}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
