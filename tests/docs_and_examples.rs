//! The registry docs cover every schema attribute, and every example
//! validates with real terraform.

use std::path::{Path, PathBuf};

use coffer::framework::{Block, Provider};
use coffer::provider::CofferProvider;

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
    let missing: Vec<String> = documented_names(block)
        .into_iter()
        .filter(|name| !text.contains(&format!("`{name}`")))
        .collect();
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
        let page = docs
            .join("resources")
            .join(format!("{}.md", resource.type_name().trim_start_matches("coffer_")));
        assert_documented(&page, &resource.schema().block);
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(text.contains("## Import"), "{} lacks ## Import", page.display());
        assert!(text.contains("## Attribute Reference"), "{} lacks ## Attribute Reference", page.display());
    }
    for data_source in provider.data_sources() {
        let page = docs
            .join("data-sources")
            .join(format!("{}.md", data_source.type_name().trim_start_matches("coffer_")));
        assert_documented(&page, &data_source.schema().block);
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

fn example_dirs() -> Vec<PathBuf> {
    let examples = repo_root().join("examples");
    let mut dirs = vec![examples.join("quickstart")];
    let resources = std::fs::read_dir(examples.join("resources")).unwrap();
    dirs.extend(resources.map(|e| e.unwrap().path()));
    dirs.sort();
    dirs
}

#[test]
fn every_example_validates_on_every_terraform() {
    for tf in terraform_versions() {
        for dir in example_dirs() {
            let wd = Workdir::new(&tf, &provider_binary());
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "tf") {
                    wd.write(path.file_name().unwrap().to_str().unwrap(), &std::fs::read_to_string(&path).unwrap());
                }
            }
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
