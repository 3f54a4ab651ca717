//! The registry docs cover every schema attribute, and every example
//! validates with real terraform.

use std::path::{Path, PathBuf};

use coffer::provider::CofferProvider;
use coffer_tfplugin::framework::{Block, Provider};

use crate::support::tools::repo_root;
use crate::support::{Workdir, provider_binary, terraform_versions};

/// Attribute names a page must mention, in backticks, nested ones by their
/// own name.
fn documented_names(block: &Block) -> Vec<String> {
    let mut names: Vec<String> = block.attributes.iter().map(|a| a.name.clone()).collect();
    for nested in &block.blocks {
        names.push(nested.name.clone());
        names.extend(documented_names(&nested.block));
    }
    names
}

fn assert_documented(page: &Path, block: &Block) {
    let text = std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
    let missing: Vec<String> =
        documented_names(block).into_iter().filter(|name| !text.contains(&format!("`{name}`"))).collect();
    assert!(missing.is_empty(), "{} does not document {missing:?}", page.display());
    for section in ["## Example Usage", "## Argument Reference"] {
        assert!(text.contains(section), "{} lacks {section}", page.display());
    }
}

#[test]
fn every_schema_attribute_is_documented() {
    let provider = CofferProvider::new();
    let docs = repo_root().join("docs");
    assert_documented(&docs.join("index.md"), &provider.schema().block);
    for resource in provider.resources() {
        let page = docs.join("resources").join(format!("{}.md", resource.type_name().trim_start_matches("coffer_")));
        assert_documented(&page, &resource.schema().block);
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(text.contains("## Import"), "{} lacks ## Import", page.display());
        assert!(text.contains("## Attribute Reference"), "{} lacks ## Attribute Reference", page.display());
    }
    for data_source in provider.data_sources() {
        let page =
            docs.join("data-sources").join(format!("{}.md", data_source.type_name().trim_start_matches("coffer_")));
        assert_documented(&page, &data_source.schema().block);
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(text.contains("## Attribute Reference"), "{} lacks ## Attribute Reference", page.display());
    }
}

#[test]
fn the_index_links_every_page() {
    let provider = CofferProvider::new();
    let index = std::fs::read_to_string(repo_root().join("docs/index.md")).unwrap();
    let pages = provider
        .resources()
        .iter()
        .map(|r| format!("resources/{}.md", r.type_name().trim_start_matches("coffer_")))
        .chain(
            provider
                .data_sources()
                .iter()
                .map(|d| format!("data-sources/{}.md", d.type_name().trim_start_matches("coffer_"))),
        )
        .collect::<Vec<_>>();
    for page in pages {
        assert!(index.contains(&format!("({page})")), "docs/index.md does not link {page}");
    }
}

#[test]
fn every_resource_has_an_example_and_an_import_script() {
    let provider = CofferProvider::new();
    for resource in provider.resources() {
        let dir = repo_root().join("examples/resources").join(resource.type_name());
        for file in ["resource.tf", "import.sh"] {
            assert!(dir.join(file).is_file(), "{} is missing", dir.join(file).display());
        }
    }
}

/// Every directory of examples that is a Terraform root module: the
/// quickstart, the multi-account example, and one per resource and data
/// source.
fn example_dirs() -> Vec<PathBuf> {
    let examples = repo_root().join("examples");
    let mut dirs = vec![examples.join("quickstart"), examples.join("multi-account")];
    for kind in ["resources", "data-sources"] {
        let entries = std::fs::read_dir(examples.join(kind)).unwrap_or_else(|e| panic!("examples/{kind}: {e}"));
        dirs.extend(entries.map(|e| e.unwrap().path()).filter(|p| p.is_dir()));
    }
    dirs.sort();
    dirs
}

/// Copies the `*.tf` files of `from` into `to`, and those of its
/// subdirectories (local modules such as `modules/baseline`) to the same
/// relative paths; Terraform's own `.terraform` directories are skipped.
pub fn copy_configuration(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap();
        if path.is_dir() {
            if name != ".terraform" {
                let target = to.join(name);
                std::fs::create_dir_all(&target).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
                copy_configuration(&path, &target);
            }
        } else if path.extension().is_some_and(|e| e == "tf") {
            std::fs::copy(&path, to.join(name)).unwrap_or_else(|e| panic!("copy {}: {e}", path.display()));
        }
    }
}

#[test]
fn every_data_source_has_an_example() {
    let provider = CofferProvider::new();
    for data_source in provider.data_sources() {
        let file = repo_root().join("examples/data-sources").join(data_source.type_name()).join("data-source.tf");
        assert!(file.is_file(), "{} is missing", file.display());
    }
}

#[test]
fn every_example_validates_on_every_terraform() {
    let dirs = example_dirs();
    for dir in ["quickstart", "multi-account", "resources/coffer_repository", "data-sources/coffer_iam_policy"] {
        let dir = repo_root().join("examples").join(dir);
        assert!(dirs.contains(&dir), "{} is not validated", dir.display());
    }
    for tf in terraform_versions() {
        for dir in &dirs {
            let wd = Workdir::new(&tf, &provider_binary());
            copy_configuration(dir, wd.path());
            wd.init();
            let out = wd.run(&["validate", "-no-color"]);
            assert!(
                out.status.success(),
                "terraform {} validate {}:\n{}{}",
                tf.version,
                dir.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Every ```terraform / ```hcl snippet of README.md and docs/ (file, line, text).
fn hcl_snippets() -> Vec<(PathBuf, usize, String)> {
    let mut files = vec![repo_root().join("README.md")];
    let mut dirs = vec![repo_root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    files.sort();
    let mut snippets = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut open: Option<(usize, String)> = None;
        for (number, line) in text.lines().enumerate() {
            match &mut open {
                None if matches!(line.trim(), "```terraform" | "```hcl" | "```tf") => {
                    open = Some((number + 1, String::new()))
                }
                Some((start, body)) if line.trim() == "```" => {
                    snippets.push((file.clone(), *start, std::mem::take(body)));
                    open = None;
                }
                Some((_, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
                None => {}
            }
        }
    }
    snippets
}

/// Issue 21: README's Quickstart held a one-line block with a nested block,
/// which Terraform rejects. Every snippet a reader may paste must be valid
/// HCL for the newest Terraform: `terraform validate` where the snippet
/// stands alone; a snippet that refers to things declared elsewhere on its
/// page (a `var.`, another resource) is at least parsed and formatted
/// (`terraform fmt -check`).
#[test]
fn every_hcl_snippet_in_readme_and_docs_is_valid() {
    let snippets = hcl_snippets();
    assert!(snippets.len() >= 10, "found only {} snippets", snippets.len());
    let tf = terraform_versions().into_iter().last().expect("a terraform");
    let mut failures = Vec::new();
    for (file, line, snippet) in &snippets {
        let wd = Workdir::new(&tf, &provider_binary());
        let header = if snippet.contains("required_providers") {
            ""
        } else {
            "terraform {\n  required_providers {\n    coffer = { source = \"coffer/coffer\" }\n  }\n}\n\n"
        };
        wd.write("main.tf", &format!("{header}{snippet}"));
        let place = format!("{}:{line}", file.strip_prefix(repo_root()).unwrap().display());
        let fmt = wd.run(&["fmt", "-check", "-diff", "-no-color"]);
        if !fmt.status.success() {
            failures.push(format!(
                "{place}: terraform fmt -check:\n{}{}",
                String::from_utf8_lossy(&fmt.stdout),
                String::from_utf8_lossy(&fmt.stderr)
            ));
            continue;
        }
        let init = wd.run(&["init", "-input=false", "-no-color"]);
        if !init.status.success() {
            let output = String::from_utf8_lossy(&init.stdout).into_owned() + &String::from_utf8_lossy(&init.stderr);
            // Snippets beside another provider (hashicorp/aws for an IAM role)
            // cannot be initialised without the registry, nor those calling a
            // module of the reader's: formatted is all we can tell.
            if !output.contains("hashicorp/") && !output.contains("Unreadable module directory") {
                failures.push(format!("{place}: terraform init:\n{output}"));
            }
            continue;
        }
        let out = wd.run(&["validate", "-no-color"]);
        let errors = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        // Declared elsewhere on the page: not this snippet's fault.
        let refers_elsewhere = [
            "Reference to undeclared",
            "Reference to undeclared input variable",
            "Reference to undeclared resource",
            "Reference to undeclared module",
            "Module not installed",
        ]
        .iter()
        .any(|m| errors.contains(m));
        if !out.status.success() && !refers_elsewhere {
            failures.push(format!("{place}: terraform {} validate:\n{errors}", tf.version));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} snippets are invalid:\n\n{}",
        failures.len(),
        snippets.len(),
        failures.join("\n\n")
    );
}
