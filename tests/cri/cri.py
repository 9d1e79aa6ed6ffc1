#!/usr/bin/env python3
"""A small CRI client for tests/kubernetes.rs: one RuntimeService call per
run, as the kubelet makes them, against containerd's CRI socket.

    cri.py SOCKET run-pod NAME NAMESPACE CGROUP_PARENT [--handler H] [--annotation K=V]...
    cri.py SOCKET create SANDBOX_ID POD NAMESPACE CGROUP_PARENT CONTAINER IMAGE
           [--memory BYTES] [--annotation K=V]... [--pod-annotation K=V]...
    cri.py SOCKET start CONTAINER_ID
    cri.py SOCKET update CONTAINER_ID MEMORY_BYTES
    cri.py SOCKET stop-pod SANDBOX_ID
    cri.py SOCKET remove-pod SANDBOX_ID

Prints the id a call returns. The protobuf stubs are generated from
runtime.proto beside this file into $CRI_STUBS on first use.
"""
import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def stubs():
    out = os.environ.get("CRI_STUBS") or os.path.join(HERE, "..", "..", "target", "cri-stubs")
    if not os.path.exists(os.path.join(out, "runtime_pb2_grpc.py")):
        os.makedirs(out, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", "-I", HERE,
             "--python_out", out, "--grpc_python_out", out, "runtime.proto"],
            check=True)
    sys.path.insert(0, out)
    import runtime_pb2
    import runtime_pb2_grpc
    return runtime_pb2, runtime_pb2_grpc


def pairs(items):
    return dict(i.split("=", 1) for i in items or [])


def sandbox_config(pb, name, namespace, cgroup_parent, annotations):
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=f"uid-{namespace}-{name}",
                                       namespace=namespace, attempt=0),
        log_directory=f"/tmp/cri-logs/{namespace}_{name}",
        annotations=annotations,
        linux=pb.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent,
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(network=pb.NODE))),
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("socket")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run-pod")
    r.add_argument("name")
    r.add_argument("namespace")
    r.add_argument("cgroup_parent")
    r.add_argument("--handler", default="")
    r.add_argument("--annotation", action="append")
    c = sub.add_parser("create")
    for a in ["sandbox", "pod", "namespace", "cgroup_parent", "container", "image"]:
        c.add_argument(a)
    c.add_argument("--memory", type=int, default=0)
    c.add_argument("--annotation", action="append")
    c.add_argument("--pod-annotation", action="append")
    for name in ["start", "stop-pod", "remove-pod"]:
        sub.add_parser(name).add_argument("id")
    u = sub.add_parser("update")
    u.add_argument("id")
    u.add_argument("memory", type=int)
    a = p.parse_args()

    pb, rpc = stubs()
    import grpc
    channel = grpc.insecure_channel(f"unix://{a.socket}")
    svc = rpc.RuntimeServiceStub(channel)
    try:
        if a.cmd == "run-pod":
            resp = svc.RunPodSandbox(pb.RunPodSandboxRequest(
                config=sandbox_config(pb, a.name, a.namespace, a.cgroup_parent,
                                      pairs(a.annotation)),
                runtime_handler=a.handler), timeout=120)
            print(resp.pod_sandbox_id)
        elif a.cmd == "create":
            sc = sandbox_config(pb, a.pod, a.namespace, a.cgroup_parent,
                                pairs(a.pod_annotation))
            resources = pb.LinuxContainerResources(memory_limit_in_bytes=a.memory)
            resp = svc.CreateContainer(pb.CreateContainerRequest(
                pod_sandbox_id=a.sandbox,
                config=pb.ContainerConfig(
                    metadata=pb.ContainerMetadata(name=a.container),
                    image=pb.ImageSpec(image=a.image),
                    command=["/bin/busybox", "sleep", "3600"],
                    annotations=pairs(a.annotation),
                    log_path=f"{a.container}.log",
                    linux=pb.LinuxContainerConfig(resources=resources)),
                sandbox_config=sc), timeout=120)
            print(resp.container_id)
        elif a.cmd == "start":
            svc.StartContainer(pb.StartContainerRequest(container_id=a.id), timeout=120)
        elif a.cmd == "update":
            svc.UpdateContainerResources(pb.UpdateContainerResourcesRequest(
                container_id=a.id,
                linux=pb.LinuxContainerResources(memory_limit_in_bytes=a.memory)), timeout=120)
        elif a.cmd == "stop-pod":
            svc.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=a.id), timeout=120)
        elif a.cmd == "remove-pod":
            svc.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=a.id), timeout=120)
    except grpc.RpcError as e:
        print(f"{a.cmd}: {e.code().name}: {e.details()}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
