//! `cglimit explain`: which policy matches a container, what limits result
//! and why, with no writes.

use std::process::ExitCode;

use serde::Serialize;

use crate::cli::{ExplainArgs, Output};
use crate::decision::{self, Verdict};
use crate::facts::{Facts, Requested};
use crate::policy;
use crate::policy::select;
use crate::size::{self, Limit};

#[derive(Serialize)]
struct Candidate<'a> {
    name: &'a str,
    origin: String,
    priority: i64,
    specificity: usize,
}

pub fn run(args: &ExplainArgs) -> ExitCode {
    match explain(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cglimit explain: {e}");
            ExitCode::from(2)
        }
    }
}

fn explain(args: &ExplainArgs) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let facts = gather(args)?;
    if let Err(e) = args.policy.check_perms() {
        eprintln!("warning: the hook and apply would refuse these policies: {e}");
    }
    let policies = policy::load_path(&args.policy.policy_dir)?;
    let matching = select::matching(&policies, &facts);
    let d = decision::decide(&policies, &facts);
    let candidates: Vec<Candidate> = matching
        .iter()
        .map(|p| Candidate {
            name: &p.name,
            origin: p.origin.to_string(),
            priority: p.priority,
            specificity: select::Candidate::specificity(*p),
        })
        .collect();
    if args.output == Output::Json {
        let out = serde_json::json!({
            "container": facts,
            "policiesLoaded": policies.len(),
            "matching": candidates,
            "decision": d,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let r = facts.requested;
        println!("{}", crate::enforce::describe(&facts));
        if let Some(i) = &facts.image {
            println!("image       {i}");
        }
        for line in pod_lines(&facts) {
            println!("{line}");
        }
        println!(
            "requested   memory {}, memory+swap {}",
            opt(r.memory),
            opt(r.memory_swap)
        );
        println!(
            "policies    {} loaded from {}, {} match (highest priority, then most selector keys, then name):",
            policies.len(),
            args.policy.policy_dir.display(),
            candidates.len()
        );
        for (i, c) in candidates.iter().enumerate() {
            println!(
                "  {}{} {:?} at {}: priority {}, {} selector keys",
                if i == 0 { "* " } else { "  " },
                i + 1,
                c.name,
                c.origin,
                c.priority,
                c.specificity
            );
        }
        println!("chosen      {}", d.why);
        match &d.verdict {
            Verdict::Deny { message } => println!("verdict     DENY: {message}"),
            Verdict::Apply => {
                let l = d.limits;
                println!(
                    "limits      memory {}, swap {} (memory+swap {}), high {}",
                    l.memory,
                    l.swap,
                    l.memory_swap(),
                    l.high.unwrap_or(Limit::Unlimited)
                );
            }
        }
        for f in &d.findings {
            println!("finding     {f}");
        }
        for n in &d.notes {
            println!("note        {n}");
        }
    }
    Ok(if d.is_denied() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// A Kubernetes container's pod facts, each with who sets it and so what
/// it may select (`policy::select`).
fn pod_lines(f: &Facts) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(ns) = &f.namespace {
        out.push(format!(
            "namespace   {ns}: written by the CRI runtime from the pod's namespace, which its author can only choose among those the API server lets them use: trusted"
        ));
    }
    if let Some(p) = &f.pod {
        out.push(format!(
            "pod         {p}: the pod's name, chosen by its author: a policy it selects is held to the baseline unless it says `trust: [pods]`"
        ));
    }
    if let Some(t) = f.container_type {
        out.push(format!(
            "type        {}: written by the CRI runtime (the pod's sandbox or one of its containers): trusted",
            t.as_str()
        ));
        if let Some(n) = &f.name {
            out.push(format!(
                "name        {n}: the container's name in the pod spec, chosen by its author: a policy it selects is held to the baseline unless it says `trust: [names]`"
            ));
        }
    }
    out
}

fn opt(l: Option<Limit>) -> String {
    l.map(|l| l.to_string()).unwrap_or_else(|| "not set".into())
}

fn gather(args: &ExplainArgs) -> Result<Facts, Box<dyn std::error::Error>> {
    let mut facts = Facts::default();
    if let Some(bundle) = &args.bundle {
        let config = crate::facts::oci::read_config(bundle)?;
        let id = bundle
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        let state: oci_spec::runtime::State = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2", "id": id, "status": "creating", "bundle": bundle,
        }))?;
        facts = crate::facts::oci::facts(&state, &config, true);
    }
    if let Some(id) = &args.id {
        facts.id = id.clone();
    }
    facts.name = args.name.clone().or(facts.name);
    facts.image = args.image.clone().or(facts.image);
    facts.cgroup = args.cgroup.clone();
    facts.namespace = args.namespace.clone().or(facts.namespace);
    facts.pod = args.pod.clone().or(facts.pod);
    if let Some(t) = &args.container_type {
        facts.container_type = crate::facts::pod::ContainerType::parse(t);
    }
    facts.labels.extend(args.labels.iter().cloned());
    facts.annotations.extend(args.annotations.iter().cloned());
    let parse = |s: &Option<String>| -> Result<Option<i64>, size::SizeError> {
        s.as_deref()
            .map(|s| size::parse_limit(s).map(Limit::to_oci))
            .transpose()
    };
    if args.memory.is_some() || args.memory_swap.is_some() {
        let m = parse(&args.memory)?;
        let s = parse(&args.memory_swap)?;
        facts.requested = Requested::from_oci(m, s);
    }
    Ok(facts)
}
