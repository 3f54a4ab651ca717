//! EBS snapshots as a block source and a restore target, through the EBS
//! direct APIs.
//!
//! A backup lists a snapshot's blocks (all of them, or only those that
//! differ from the parent's snapshot: EBS tracks changed blocks between
//! snapshots of one volume) and reads each with its block token. A restore
//! writes a new snapshot block by block; EC2 can then make a volume of it.
//!
//! Every block read is checked against the SHA-256 checksum EBS sends with
//! it; every block written carries its checksum, which EBS verifies. The SDK
//! client retries throttling and transient failures itself.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ebs::error::SdkError;
use aws_sdk_ebs::operation::complete_snapshot::CompleteSnapshotError;
use aws_sdk_ebs::operation::get_snapshot_block::GetSnapshotBlockError;
use aws_sdk_ebs::operation::list_changed_blocks::ListChangedBlocksError;
use aws_sdk_ebs::operation::list_snapshot_blocks::ListSnapshotBlocksError;
use aws_sdk_ebs::operation::put_snapshot_block::PutSnapshotBlockError;
use aws_sdk_ebs::primitives::ByteStream;
use aws_sdk_ebs::types::error::{ResourceNotFoundException, ValidationException};
use aws_sdk_ebs::types::{ChecksumAlgorithm, ResourceNotFoundExceptionReason, Status, Tag, ValidationExceptionReason};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::AwsError;
use coffer_repository::blocks::{BLOCK_SIZE, BlockError, BlockRef, BlockSink, BlockSource, Listing};

/// Blocks per list page: the most the EBS direct APIs allow.
const PAGE_SIZE: i32 = 10_000;

const GIB: u64 = 1 << 30;

/// An EBS snapshot to back up, read through the EBS direct APIs.
pub struct EbsSnapshotSource {
    client: aws_sdk_ebs::Client,
    snapshot_id: String,
}

impl EbsSnapshotSource {
    pub fn new(client: aws_sdk_ebs::Client, snapshot_id: impl Into<String>) -> Self {
        Self { client, snapshot_id: snapshot_id.into() }
    }

    pub fn snapshot_id(&self) -> &str {
        &self.snapshot_id
    }

    /// Every block holding data (ListSnapshotBlocks, all pages).
    async fn list_all(&self) -> Result<Listing, BlockError> {
        let mut blocks = Vec::new();
        let mut volume_size = None;
        let mut next_token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_snapshot_blocks()
                .snapshot_id(&self.snapshot_id)
                .max_results(PAGE_SIZE)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| {
                    let gone = matches!(
                        e.as_service_error(),
                        Some(ListSnapshotBlocksError::ResourceNotFoundException(r)) if snapshot_gone(r)
                    );
                    api_error(e, gone, &self.snapshot_id, format_args!("listing the blocks of {}", self.snapshot_id))
                })?;
            check_block_size(&self.snapshot_id, page.block_size())?;
            volume_size = volume_size.or(page.volume_size());
            for block in page.blocks() {
                blocks.push(BlockRef {
                    index: block_index(&self.snapshot_id, block.block_index())?,
                    token: block.block_token().unwrap_or_default().to_string(),
                });
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => break,
            }
        }
        blocks.sort_by_key(|b| b.index);
        blocks.dedup_by_key(|b| b.index);
        Ok(Listing {
            volume_size: volume_bytes(&self.snapshot_id, volume_size)?,
            blocks,
            removed: Vec::new(),
            changes_since_parent: false,
        })
    }

    /// The blocks that differ from `parent` (ListChangedBlocks, all pages),
    /// or `None` when EBS cannot compare with it: the parent snapshot was
    /// deleted, or is not a snapshot (an id of another kind of source), or
    /// belongs to another volume's lineage.
    async fn list_changes(&self, parent: &str) -> Result<Option<Listing>, BlockError> {
        let mut blocks = Vec::new();
        let mut removed = Vec::new();
        let mut volume_size = None;
        let mut next_token: Option<String> = None;
        loop {
            let result = self
                .client
                .list_changed_blocks()
                .first_snapshot_id(parent)
                .second_snapshot_id(&self.snapshot_id)
                .max_results(PAGE_SIZE)
                .set_next_token(next_token.take())
                .send()
                .await;
            let page = match result {
                Ok(page) => page,
                Err(e) if cannot_compare(e.as_service_error()) => {
                    tracing::info!(
                        snapshot = %self.snapshot_id,
                        %parent,
                        error = %AwsError::from_sdk(e, &[]),
                        "cannot list the changes since the parent snapshot; listing every block"
                    );
                    return Ok(None);
                }
                Err(e) => {
                    return Err(api_error(
                        e,
                        false,
                        &self.snapshot_id,
                        format_args!("listing the blocks of {} changed since {parent}", self.snapshot_id),
                    ));
                }
            };
            check_block_size(&self.snapshot_id, page.block_size())?;
            volume_size = volume_size.or(page.volume_size());
            for block in page.changed_blocks() {
                let index = block_index(&self.snapshot_id, block.block_index())?;
                match (block.second_block_token(), block.first_block_token()) {
                    (Some(token), _) => blocks.push(BlockRef { index, token: token.to_string() }),
                    (None, Some(_)) => removed.push(index),
                    (None, None) => {}
                }
            }
            match page.next_token() {
                Some(token) if !token.is_empty() => next_token = Some(token.to_string()),
                _ => break,
            }
        }
        blocks.sort_by_key(|b| b.index);
        blocks.dedup_by_key(|b| b.index);
        removed.sort_unstable();
        removed.dedup();
        Ok(Some(Listing {
            volume_size: volume_bytes(&self.snapshot_id, volume_size)?,
            blocks,
            removed,
            changes_since_parent: true,
        }))
    }
}

#[async_trait]
impl BlockSource for EbsSnapshotSource {
    fn name(&self) -> String {
        self.snapshot_id.clone()
    }

    async fn list(&self, parent: Option<&str>) -> Result<Listing, BlockError> {
        if let Some(parent) = parent {
            if parent != self.snapshot_id {
                if let Some(listing) = self.list_changes(parent).await? {
                    return Ok(listing);
                }
            }
        }
        self.list_all().await
    }

    async fn read(&self, block: &BlockRef) -> Result<Vec<u8>, BlockError> {
        // A body cut mid-stream, or damaged in transit, is read again: a
        // flaky connection must not fail a backup of thousands of blocks.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.read_once(block).await {
                Err(Transient(e)) if attempt < BLOCK_READ_ATTEMPTS => {
                    tracing::debug!(snapshot = %self.snapshot_id, index = block.index, attempt, error = %e, "reading the block again");
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(Transient(e) | Final(e)) => return Err(e),
                Ok(data) => return Ok(data),
            }
        }
    }
}

/// How often one block is asked for when its body breaks off or fails its checksum.
const BLOCK_READ_ATTEMPTS: u64 = 4;

/// Why a block read failed: worth another try, or not.
enum ReadFailure {
    Transient(BlockError),
    Final(BlockError),
}
use ReadFailure::{Final, Transient};

impl EbsSnapshotSource {
    async fn read_once(&self, block: &BlockRef) -> Result<Vec<u8>, ReadFailure> {
        let index = block.index;
        let action = || format!("reading block {index} of {}", self.snapshot_id);
        let out = self
            .client
            .get_snapshot_block()
            .snapshot_id(&self.snapshot_id)
            .block_index(to_i32(index, &action).map_err(Final)?)
            .block_token(&block.token)
            .send()
            .await
            .map_err(|e| {
                let gone = matches!(
                    e.as_service_error(),
                    Some(GetSnapshotBlockError::ResourceNotFoundException(r))
                        if snapshot_gone(r)
                );
                Final(api_error(e, gone, &self.snapshot_id, action()))
            })?;
        let data_length = out.data_length();
        let checksum = out.checksum().map(str::to_string);
        let algorithm = out.checksum_algorithm().cloned();
        let data = out
            .block_data
            .collect()
            .await
            .map_err(|e| Transient(BlockError::Io(format!("{}: {e}", action()))))?
            // Not AggregatedBytes::to_vec, which copies byte by byte.
            .into_bytes();
        let data = Vec::from(data);

        if let Some(length) = data_length {
            if usize::try_from(length).ok() != Some(data.len()) {
                return Err(Transient(BlockError::Io(format!(
                    "{}: EBS announced {length} bytes and sent {}",
                    action(),
                    data.len()
                ))));
            }
        }
        match (algorithm, checksum) {
            (Some(ChecksumAlgorithm::ChecksumAlgorithmSha256), Some(expected)) => {
                if sha256_base64(&data) != expected {
                    return Err(Transient(BlockError::Checksum { source_name: self.snapshot_id.clone(), index }));
                }
            }
            (algorithm, checksum) => {
                // Unverifiable data is not backed up: EBS always sends a
                // SHA-256 checksum, so its absence means something is wrong.
                return Err(Final(BlockError::Io(format!(
                    "{}: EBS sent no SHA-256 checksum to verify the block with (algorithm {:?}, checksum {:?})",
                    action(),
                    algorithm.as_ref().map(ChecksumAlgorithm::as_str),
                    checksum
                ))));
            }
        }
        if data.len() != BLOCK_SIZE as usize {
            return Err(Final(BlockError::Io(format!(
                "{}: {} bytes, not a {BLOCK_SIZE}-byte EBS block",
                action(),
                data.len()
            ))));
        }
        Ok(data)
    }
}

/// How a restored snapshot is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotEncryption {
    /// Under the account's default EBS key in the region.
    DefaultKey,
    /// Under this KMS key (ARN).
    Key(String),
}

/// A new EBS snapshot being written by a restore (StartSnapshot,
/// PutSnapshotBlock, CompleteSnapshot).
pub struct EbsSnapshotSink {
    client: aws_sdk_ebs::Client,
    snapshot_id: String,
    /// Deletes the unfinished snapshot on abort; without it an aborted
    /// snapshot lingers until its timeout, when EBS marks it failed.
    ec2: Option<aws_sdk_ec2::Client>,
}

impl EbsSnapshotSink {
    /// Starts a snapshot of a `volume_size_bytes` volume (rounded up to
    /// whole GiB). EBS cancels it if no block is written, or it is not
    /// completed, within `timeout_minutes` (60 is EBS's default).
    pub async fn start(
        client: aws_sdk_ebs::Client,
        volume_size_bytes: u64,
        description: &str,
        tags: Vec<(String, String)>,
        encryption: Option<SnapshotEncryption>,
        timeout_minutes: u32,
    ) -> Result<Self, BlockError> {
        let size_gib = volume_size_bytes.div_ceil(GIB).max(1);
        let mut request = client
            .start_snapshot()
            .volume_size(i64::try_from(size_gib).unwrap_or(i64::MAX))
            .description(description)
            .set_tags(Some(tags.into_iter().map(|(key, value)| Tag::builder().key(key).value(value).build()).collect()))
            // Makes the SDK's retries of this call idempotent.
            .client_token(uuid::Uuid::new_v4().to_string())
            .timeout(i32::try_from(timeout_minutes).unwrap_or(i32::MAX));
        match encryption {
            Some(SnapshotEncryption::DefaultKey) => request = request.encrypted(true),
            Some(SnapshotEncryption::Key(arn)) => request = request.encrypted(true).kms_key_arn(arn),
            None => {}
        }
        let out = request
            .send()
            .await
            .map_err(|e| api_error(e, false, "", format_args!("starting a snapshot of {size_gib} GiB")))?;
        if let Some(size) = out.block_size() {
            check_block_size("the new snapshot", Some(size))?;
        }
        let snapshot_id = out
            .snapshot_id()
            .ok_or_else(|| BlockError::Io("StartSnapshot answered without a snapshot id".to_string()))?
            .to_string();
        Ok(Self { client, snapshot_id, ec2: None })
    }

    /// Deletes the snapshot through EC2 when the restore is aborted (EBS
    /// direct APIs cannot cancel a snapshot).
    pub fn deleting_on_abort(mut self, ec2: aws_sdk_ec2::Client) -> Self {
        self.ec2 = Some(ec2);
        self
    }

    pub fn snapshot_id(&self) -> &str {
        &self.snapshot_id
    }
}

#[async_trait]
impl BlockSink for EbsSnapshotSink {
    async fn write(&self, index: u64, mut data: Vec<u8>) -> Result<(), BlockError> {
        let action = || format!("writing block {index} of {}", self.snapshot_id);
        if data.len() > BLOCK_SIZE as usize {
            return Err(BlockError::Io(format!("{}: {} bytes is more than a block", action(), data.len())));
        }
        // EBS takes whole blocks only; the tail of a short last block reads
        // as zeros either way.
        data.resize(BLOCK_SIZE as usize, 0);
        let checksum = sha256_base64(&data);
        self.client
            .put_snapshot_block()
            .snapshot_id(&self.snapshot_id)
            .block_index(to_i32(index, &action)?)
            .block_data(ByteStream::from(data))
            .data_length(BLOCK_SIZE as i32)
            .checksum(checksum)
            .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
            .send()
            .await
            .map_err(|e| {
                let gone = matches!(
                    e.as_service_error(),
                    Some(PutSnapshotBlockError::ResourceNotFoundException(r))
                        if snapshot_gone(r)
                );
                api_error(e, gone, &self.snapshot_id, action())
            })?;
        Ok(())
    }

    /// Completes the snapshot and returns its id. EBS finishes it in the
    /// background: the snapshot is `pending` in EC2 for a while afterwards.
    async fn finish(&self, blocks_written: u64) -> Result<String, BlockError> {
        let action = || format!("completing {}", self.snapshot_id);
        let out = self
            .client
            .complete_snapshot()
            .snapshot_id(&self.snapshot_id)
            .changed_blocks_count(to_i32(blocks_written, &action)?)
            .send()
            .await
            .map_err(|e| {
                let gone = matches!(
                    e.as_service_error(),
                    Some(CompleteSnapshotError::ResourceNotFoundException(r))
                        if snapshot_gone(r)
                );
                api_error(e, gone, &self.snapshot_id, action())
            })?;
        if out.status() == Some(&Status::Error) {
            return Err(BlockError::Io(format!("{}: EBS reports the snapshot failed", action())));
        }
        Ok(self.snapshot_id.clone())
    }

    async fn abort(&self) {
        let Some(ec2) = &self.ec2 else {
            tracing::warn!(
                snapshot = %self.snapshot_id,
                "restore aborted; the unfinished snapshot fails when its timeout passes"
            );
            return;
        };
        if let Err(e) = ec2.delete_snapshot().snapshot_id(&self.snapshot_id).send().await {
            tracing::warn!(
                snapshot = %self.snapshot_id,
                error = %AwsError::from_sdk(e, &[]),
                "restore aborted; deleting the unfinished snapshot failed"
            );
        }
    }
}

/// A not-found error about the snapshot itself (not, say, its KMS key).
fn snapshot_gone(e: &ResourceNotFoundException) -> bool {
    matches!(e.reason(), None | Some(ResourceNotFoundExceptionReason::SnapshotNotFound))
}

/// Whether ListChangedBlocks failed because it cannot compare with the
/// first snapshot: gone, not a snapshot id, or unrelated. (When it is the
/// second snapshot that is gone, the full listing says so.)
fn cannot_compare(e: Option<&ListChangedBlocksError>) -> bool {
    match e {
        Some(ListChangedBlocksError::ResourceNotFoundException(r)) => snapshot_gone(r),
        Some(ListChangedBlocksError::ValidationException(v)) => is_unusable_parent(v),
        _ => false,
    }
}

fn is_unusable_parent(e: &ValidationException) -> bool {
    matches!(
        e.reason(),
        Some(ValidationExceptionReason::InvalidSnapshotId | ValidationExceptionReason::UnrelatedSnapshots)
    )
}

/// An SDK error as a [`BlockError`]: `NotFound(snapshot_id)` when `gone`,
/// else `Io("<action>: <code>: <message>")`.
fn api_error<E, R>(error: SdkError<E, R>, gone: bool, snapshot_id: &str, action: impl std::fmt::Display) -> BlockError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if gone {
        return BlockError::NotFound(snapshot_id.to_string());
    }
    BlockError::Io(format!("{action}: {}", AwsError::from_sdk(error, &[])))
}

fn check_block_size(snapshot: &str, block_size: Option<i32>) -> Result<(), BlockError> {
    match block_size {
        Some(size) if i64::from(size) != i64::from(BLOCK_SIZE) => Err(BlockError::Io(format!(
            "{snapshot} has {size}-byte blocks; Coffer reads EBS snapshots in {BLOCK_SIZE}-byte blocks"
        ))),
        _ => Ok(()),
    }
}

fn block_index(snapshot: &str, index: Option<i32>) -> Result<u64, BlockError> {
    index.and_then(|i| u64::try_from(i).ok()).ok_or_else(|| {
        BlockError::Io(format!("listing the blocks of {snapshot}: a block without a valid index ({index:?})"))
    })
}

fn volume_bytes(snapshot: &str, size_gib: Option<i64>) -> Result<u64, BlockError> {
    size_gib
        .and_then(|s| u64::try_from(s).ok())
        .and_then(|s| s.checked_mul(GIB))
        .ok_or_else(|| BlockError::Io(format!("listing the blocks of {snapshot}: no valid VolumeSize ({size_gib:?})")))
}

fn to_i32(n: u64, action: &impl Fn() -> String) -> Result<i32, BlockError> {
    i32::try_from(n).map_err(|_| BlockError::Io(format!("{}: {n} is beyond what EBS accepts", action())))
}

fn sha256_base64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
}

#[cfg(test)]
mod tests {
    use aws_sdk_ebs::config::{BehaviorVersion, Credentials, Region};
    use aws_sdk_ebs::operation::get_snapshot_block::GetSnapshotBlockOutput;
    use aws_sdk_ebs::operation::list_changed_blocks::ListChangedBlocksOutput;
    use aws_sdk_ebs::operation::list_snapshot_blocks::ListSnapshotBlocksOutput;
    use aws_sdk_ebs::types::{Block, ChangedBlock};
    use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
    use aws_smithy_types::error::ErrorMetadata;

    use super::*;

    fn client(rules: &[&Rule]) -> aws_sdk_ebs::Client {
        let interceptor =
            rules.iter().fold(MockResponseInterceptor::new().rule_mode(RuleMode::Sequential), |i, r| i.with_rule(r));
        aws_sdk_ebs::Client::from_conf(
            aws_sdk_ebs::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("mock", "mock", None, None, "mock"))
                .interceptor(interceptor)
                .http_client(create_mock_http_client())
                .build(),
        )
    }

    fn block_of(byte: u8) -> Vec<u8> {
        vec![byte; BLOCK_SIZE as usize]
    }

    fn run<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
    }

    #[test]
    fn a_block_whose_checksum_does_not_match_its_data_is_refused() {
        let damaged = mock!(aws_sdk_ebs::Client::get_snapshot_block)
            .match_requests(|r| {
                r.snapshot_id() == Some("snap-1") && r.block_index() == Some(12) && r.block_token() == Some("t12")
            })
            .sequence()
            .output(|| {
                GetSnapshotBlockOutput::builder()
                    .block_data(ByteStream::from(block_of(1)))
                    .data_length(BLOCK_SIZE as i32)
                    .checksum(sha256_base64(&block_of(2)))
                    .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
                    .build()
            })
            .times(BLOCK_READ_ATTEMPTS as usize)
            .build();
        let intact = mock!(aws_sdk_ebs::Client::get_snapshot_block)
            .match_requests(|r| r.block_index() == Some(13))
            .then_output(|| {
                GetSnapshotBlockOutput::builder()
                    .block_data(ByteStream::from(block_of(3)))
                    .data_length(BLOCK_SIZE as i32)
                    .checksum(sha256_base64(&block_of(3)))
                    .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
                    .build()
            });
        let source = EbsSnapshotSource::new(client(&[&damaged, &intact]), "snap-1");
        run(async {
            match source.read(&BlockRef { index: 12, token: "t12".into() }).await {
                Err(BlockError::Checksum { source_name, index }) => {
                    assert_eq!((source_name.as_str(), index), ("snap-1", 12));
                }
                other => panic!("expected a checksum error, got {other:?}"),
            }
            assert_eq!(damaged.num_calls(), BLOCK_READ_ATTEMPTS as usize, "asked again before giving up");
            let data = source.read(&BlockRef { index: 13, token: "t13".into() }).await.unwrap();
            assert_eq!(data, block_of(3));
        });
    }

    /// Issue 21, defect 5: a block damaged in transit once is read again.
    #[test]
    fn a_block_damaged_in_transit_once_is_read_again() {
        let output = |data: Vec<u8>, checksum: String| {
            GetSnapshotBlockOutput::builder()
                .block_data(ByteStream::from(data))
                .data_length(BLOCK_SIZE as i32)
                .checksum(checksum)
                .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
                .build()
        };
        let flaky = mock!(aws_sdk_ebs::Client::get_snapshot_block)
            .sequence()
            .output(move || output(block_of(9), sha256_base64(&block_of(4))))
            .output(move || output(block_of(4), sha256_base64(&block_of(4))))
            .build();
        let source = EbsSnapshotSource::new(client(&[&flaky]), "snap-1");
        let data = run(source.read(&BlockRef { index: 5, token: "t5".into() })).unwrap();
        assert_eq!(data, block_of(4));
        assert_eq!(flaky.num_calls(), 2);
    }

    #[test]
    fn a_deleted_parent_falls_back_to_listing_every_block() {
        let parent_gone = mock!(aws_sdk_ebs::Client::list_changed_blocks)
            .match_requests(|r| {
                r.first_snapshot_id() == Some("snap-parent") && r.second_snapshot_id() == Some("snap-2")
            })
            .then_error(|| {
                ListChangedBlocksError::ResourceNotFoundException(
                    ResourceNotFoundException::builder()
                        .message("The snapshot 'snap-parent' does not exist.")
                        .reason(ResourceNotFoundExceptionReason::SnapshotNotFound)
                        .meta(ErrorMetadata::builder().code("ResourceNotFoundException").build())
                        .build(),
                )
            });
        let all = mock!(aws_sdk_ebs::Client::list_snapshot_blocks)
            .match_requests(|r| r.snapshot_id() == Some("snap-2"))
            .then_output(|| {
                ListSnapshotBlocksOutput::builder()
                    .blocks(Block::builder().block_index(7).block_token("t7").build())
                    .blocks(Block::builder().block_index(0).block_token("t0").build())
                    .volume_size(8)
                    .block_size(BLOCK_SIZE as i32)
                    .build()
            });
        let source = EbsSnapshotSource::new(client(&[&parent_gone, &all]), "snap-2");
        let listing = run(source.list(Some("snap-parent"))).unwrap();
        assert_eq!(
            listing,
            Listing {
                volume_size: 8 << 30,
                blocks: vec![BlockRef { index: 0, token: "t0".into() }, BlockRef { index: 7, token: "t7".into() }],
                removed: vec![],
                changes_since_parent: false,
            }
        );
        assert_eq!(parent_gone.num_calls(), 1);
        assert_eq!(all.num_calls(), 1);
    }

    #[test]
    fn every_page_of_changed_blocks_is_followed() {
        let first = mock!(aws_sdk_ebs::Client::list_changed_blocks)
            .match_requests(|r| {
                r.first_snapshot_id() == Some("snap-1")
                    && r.next_token().is_none()
                    && r.max_results() == Some(PAGE_SIZE)
            })
            .then_output(|| {
                ListChangedBlocksOutput::builder()
                    .changed_blocks(
                        ChangedBlock::builder().block_index(1).first_block_token("a1").second_block_token("b1").build(),
                    )
                    .changed_blocks(ChangedBlock::builder().block_index(2).first_block_token("a2").build())
                    .volume_size(1)
                    .block_size(BLOCK_SIZE as i32)
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(aws_sdk_ebs::Client::list_changed_blocks)
            .match_requests(|r| r.first_snapshot_id() == Some("snap-1") && r.next_token() == Some("page-2"))
            .then_output(|| {
                ListChangedBlocksOutput::builder()
                    .changed_blocks(ChangedBlock::builder().block_index(5).second_block_token("b5").build())
                    .changed_blocks(ChangedBlock::builder().block_index(9).first_block_token("a9").build())
                    .volume_size(1)
                    .block_size(BLOCK_SIZE as i32)
                    .build()
            });
        let source = EbsSnapshotSource::new(client(&[&first, &second]), "snap-2");
        let listing = run(source.list(Some("snap-1"))).unwrap();
        assert_eq!(
            listing,
            Listing {
                volume_size: 1 << 30,
                blocks: vec![BlockRef { index: 1, token: "b1".into() }, BlockRef { index: 5, token: "b5".into() }],
                removed: vec![2, 9],
                changes_since_parent: true,
            }
        );
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    }

    #[test]
    fn every_page_of_snapshot_blocks_is_followed() {
        let first = mock!(aws_sdk_ebs::Client::list_snapshot_blocks)
            .match_requests(|r| r.next_token().is_none())
            .then_output(|| {
                ListSnapshotBlocksOutput::builder()
                    .blocks(Block::builder().block_index(0).block_token("t0").build())
                    .volume_size(2)
                    .block_size(BLOCK_SIZE as i32)
                    .next_token("more")
                    .build()
            });
        let second = mock!(aws_sdk_ebs::Client::list_snapshot_blocks)
            .match_requests(|r| r.next_token() == Some("more"))
            .then_output(|| {
                ListSnapshotBlocksOutput::builder()
                    .blocks(Block::builder().block_index(4000).block_token("t4000").build())
                    .volume_size(2)
                    .block_size(BLOCK_SIZE as i32)
                    .build()
            });
        let source = EbsSnapshotSource::new(client(&[&first, &second]), "snap-3");
        let listing = run(source.list(None)).unwrap();
        assert_eq!(listing.blocks.iter().map(|b| b.index).collect::<Vec<_>>(), [0, 4000]);
        assert_eq!(listing.volume_size, 2 << 30);
        assert!(!listing.changes_since_parent);
    }

    #[test]
    fn a_snapshot_with_other_block_sizes_is_refused() {
        let small = mock!(aws_sdk_ebs::Client::list_snapshot_blocks)
            .then_output(|| ListSnapshotBlocksOutput::builder().volume_size(1).block_size(512).build());
        let source = EbsSnapshotSource::new(client(&[&small]), "snap-4");
        match run(source.list(None)) {
            Err(BlockError::Io(message)) => assert!(message.contains("512-byte blocks"), "{message}"),
            other => panic!("expected a block size error, got {other:?}"),
        }
    }

    #[test]
    fn a_missing_snapshot_is_not_found() {
        let gone = mock!(aws_sdk_ebs::Client::list_snapshot_blocks).then_error(|| {
            ListSnapshotBlocksError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .reason(ResourceNotFoundExceptionReason::SnapshotNotFound)
                    .meta(ErrorMetadata::builder().code("ResourceNotFoundException").build())
                    .build(),
            )
        });
        let source = EbsSnapshotSource::new(client(&[&gone]), "snap-5");
        match run(source.list(None)) {
            Err(BlockError::NotFound(id)) => assert_eq!(id, "snap-5"),
            other => panic!("expected not found, got {other:?}"),
        }
    }

    #[test]
    fn a_short_block_is_padded_and_sent_with_the_checksum_of_what_is_sent() {
        let start = mock!(aws_sdk_ebs::Client::start_snapshot)
            .match_requests(|r| r.volume_size() == Some(2) && r.timeout() == Some(60) && r.client_token().is_some())
            .then_output(|| {
                aws_sdk_ebs::operation::start_snapshot::StartSnapshotOutput::builder()
                    .snapshot_id("snap-new")
                    .block_size(BLOCK_SIZE as i32)
                    .build()
            });
        let mut padded = vec![7u8; 10];
        padded.resize(BLOCK_SIZE as usize, 0);
        let expected = sha256_base64(&padded);
        let put = mock!(aws_sdk_ebs::Client::put_snapshot_block)
            .match_requests(move |r| {
                r.snapshot_id() == Some("snap-new")
                    && r.block_index() == Some(3)
                    && r.data_length() == Some(BLOCK_SIZE as i32)
                    && r.checksum() == Some(expected.as_str())
                    && r.block_data().bytes().map(<[u8]>::len) == Some(BLOCK_SIZE as usize)
            })
            .then_output(|| aws_sdk_ebs::operation::put_snapshot_block::PutSnapshotBlockOutput::builder().build());
        let complete = mock!(aws_sdk_ebs::Client::complete_snapshot)
            .match_requests(|r| r.snapshot_id() == Some("snap-new") && r.changed_blocks_count() == Some(1))
            .then_output(|| {
                aws_sdk_ebs::operation::complete_snapshot::CompleteSnapshotOutput::builder()
                    .status(Status::Pending)
                    .build()
            });
        let ebs = client(&[&start, &put, &complete]);
        run(async {
            let sink = EbsSnapshotSink::start(ebs, GIB + 1, "restore", vec![], None, 60).await.unwrap();
            assert_eq!(sink.snapshot_id(), "snap-new");
            sink.write(3, vec![7u8; 10]).await.unwrap();
            assert_eq!(sink.finish(1).await.unwrap(), "snap-new");
        });
        assert_eq!((start.num_calls(), put.num_calls(), complete.num_calls()), (1, 1, 1));
    }
}
