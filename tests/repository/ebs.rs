//! EBS snapshots as block sources and restore targets, against moto: blocks
//! an instance wrote to its volume come back through the EBS direct APIs,
//! changed-block listings are exact, and a restored snapshot makes a volume
//! holding the same data.

use std::collections::BTreeMap;

use coffer_aws::ebs_blocks::{EbsSnapshotSink, EbsSnapshotSource};
use coffer_repository::blocks::{BLOCK_SIZE, BlockError, BlockSink, BlockSource};

use crate::support::estate::{instance, tags, volume_ids, write_volume_block, zero_volume_block};
use crate::support::{Moto, block_on};

const GIB: u64 = 1 << 30;

/// A full block whose bytes depend on `seed`.
fn block(seed: u8) -> Vec<u8> {
    (0..BLOCK_SIZE as usize).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut block = data.to_vec();
    block.resize(BLOCK_SIZE as usize, 0);
    block
}

struct Clients {
    ec2: aws_sdk_ec2::Client,
    ebs: aws_sdk_ebs::Client,
}

async fn clients(moto: &Moto) -> Clients {
    let config = moto.sdk_config("us-east-1").await;
    Clients { ec2: aws_sdk_ec2::Client::new(&config), ebs: aws_sdk_ebs::Client::new(&config) }
}

/// An instance's root volume (8 GiB).
async fn root_volume(ec2: &aws_sdk_ec2::Client) -> String {
    let id = instance(ec2, &tags(&[("Name", "blocks")]), 0, None).await;
    volume_ids(ec2, &id).await.remove(0)
}

async fn snapshot(ec2: &aws_sdk_ec2::Client, volume_id: &str) -> String {
    ec2.create_snapshot().volume_id(volume_id).send().await.expect("CreateSnapshot").snapshot_id().unwrap().to_string()
}

/// Every block of a snapshot, listed and read through the EBS direct APIs.
async fn read_snapshot(ebs: &aws_sdk_ebs::Client, snapshot_id: &str) -> (u64, BTreeMap<u64, Vec<u8>>) {
    let source = EbsSnapshotSource::new(ebs.clone(), snapshot_id);
    let listing = source.list(None).await.expect("list");
    assert!(!listing.changes_since_parent);
    assert!(listing.removed.is_empty());
    let mut blocks = BTreeMap::new();
    for block in &listing.blocks {
        blocks.insert(block.index, source.read(block).await.expect("read"));
    }
    (listing.volume_size, blocks)
}

#[test]
fn an_ec2_snapshot_reads_back_and_lists_its_changes_since_the_previous_one() {
    let moto = Moto::start();
    block_on(async {
        let Clients { ec2, ebs } = clients(&moto).await;
        let volume = root_volume(&ec2).await;
        for (index, seed) in [(0, 1), (1, 2), (2, 3), (3, 4), (100, 5)] {
            write_volume_block(moto.port(), &volume, index, &block(seed));
        }
        // A partial write: the rest of the block reads as zeros.
        write_volume_block(moto.port(), &volume, 7, b"boot sector");
        let first = snapshot(&ec2, &volume).await;

        let (size, blocks) = read_snapshot(&ebs, &first).await;
        assert_eq!(size, 8 * GIB);
        let expected: BTreeMap<u64, Vec<u8>> =
            [(0, block(1)), (1, block(2)), (2, block(3)), (3, block(4)), (7, padded(b"boot sector")), (100, block(5))]
                .into();
        assert_eq!(blocks.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
        assert!(blocks == expected, "the blocks read differ from those written");

        // Two blocks change, one is new, one is zeroed; the others stay.
        write_volume_block(moto.port(), &volume, 1, &block(20));
        write_volume_block(moto.port(), &volume, 100, &block(21));
        write_volume_block(moto.port(), &volume, 50, &block(22));
        zero_volume_block(moto.port(), &volume, 2);
        let second = snapshot(&ec2, &volume).await;

        let source = EbsSnapshotSource::new(ebs.clone(), &second);
        let changes = source.list(Some(&first)).await.unwrap();
        assert!(changes.changes_since_parent);
        assert_eq!(changes.volume_size, 8 * GIB);
        assert_eq!(changes.blocks.iter().map(|b| b.index).collect::<Vec<_>>(), [1, 50, 100]);
        assert_eq!(changes.removed, [2]);
        let mut changed = BTreeMap::new();
        for block in &changes.blocks {
            changed.insert(block.index, source.read(block).await.unwrap());
        }
        assert!(changed == BTreeMap::from([(1, block(20)), (50, block(22)), (100, block(21))]));

        // The parent is gone: every block, as without one.
        ec2.delete_snapshot().snapshot_id(&first).send().await.unwrap();
        let full = source.list(Some(&first)).await.unwrap();
        assert!(!full.changes_since_parent);
        assert_eq!(full.blocks.iter().map(|b| b.index).collect::<Vec<_>>(), [0, 1, 3, 7, 50, 100]);

        // And a deleted snapshot is not found.
        match EbsSnapshotSource::new(ebs.clone(), &first).list(None).await {
            Err(BlockError::NotFound(id)) => assert_eq!(id, first),
            other => panic!("expected NotFound for the deleted snapshot, got {other:?}"),
        }
    });
}

#[test]
fn a_restored_snapshot_holds_the_blocks_written_and_makes_a_volume_holding_them() {
    let moto = Moto::start();
    block_on(async {
        let Clients { ec2, ebs } = clients(&moto).await;
        let volume = root_volume(&ec2).await;
        for (index, seed) in [(0, 9), (5, 8), (6, 7), (16_383, 6)] {
            write_volume_block(moto.port(), &volume, index, &block(seed));
        }
        let original = snapshot(&ec2, &volume).await;
        let (size, blocks) = read_snapshot(&ebs, &original).await;
        assert_eq!(blocks.len(), 4);

        let sink = EbsSnapshotSink::start(
            ebs.clone(),
            size,
            "coffer restore test",
            tags(&[("coffer:restore-of", original.as_str())]),
            None,
            60,
        )
        .await
        .expect("StartSnapshot");
        // Any order, as a restore writes.
        for (index, data) in blocks.iter().rev() {
            sink.write(*index, data.clone()).await.expect("PutSnapshotBlock");
        }
        let restored = sink.finish(blocks.len() as u64).await.expect("CompleteSnapshot");
        assert_eq!(restored, sink.snapshot_id());
        assert_ne!(restored, original);

        let (restored_size, restored_blocks) = read_snapshot(&ebs, &restored).await;
        assert_eq!(restored_size, size);
        assert!(restored_blocks == blocks, "the restored snapshot differs from the original");

        let description = ec2.describe_snapshots().snapshot_ids(&restored).send().await.unwrap();
        let made = &description.snapshots()[0];
        assert_eq!(made.volume_size(), Some(8));
        assert!(made.tags().iter().any(|t| t.key() == Some("coffer:restore-of") && t.value() == Some(&original)));

        // A volume made of the restored snapshot holds the same data.
        let from_restore = ec2
            .create_volume()
            .snapshot_id(&restored)
            .availability_zone("us-east-1a")
            .send()
            .await
            .expect("CreateVolume")
            .volume_id()
            .unwrap()
            .to_string();
        let again = snapshot(&ec2, &from_restore).await;
        let (again_size, again_blocks) = read_snapshot(&ebs, &again).await;
        assert_eq!(again_size, size);
        assert!(again_blocks == blocks, "the volume made of the restored snapshot differs");
    });
}

#[test]
fn an_aborted_restore_deletes_its_unfinished_snapshot() {
    let moto = Moto::start();
    block_on(async {
        let Clients { ec2, ebs } = clients(&moto).await;
        let sink = EbsSnapshotSink::start(ebs.clone(), 3 * GIB + 1, "aborted", vec![], None, 60)
            .await
            .expect("StartSnapshot")
            .deleting_on_abort(ec2.clone());
        sink.write(0, block(1)).await.unwrap();
        let id = sink.snapshot_id().to_string();
        let before = ec2.describe_snapshots().snapshot_ids(&id).send().await.unwrap();
        assert_eq!(before.snapshots()[0].volume_size(), Some(4), "3 GiB + 1 byte rounds up to 4 GiB");

        sink.abort().await;
        assert!(ec2.describe_snapshots().snapshot_ids(&id).send().await.is_err(), "{id} still exists");
        match sink.write(1, block(2)).await {
            Err(BlockError::NotFound(gone)) => assert_eq!(gone, id),
            other => panic!("expected NotFound after abort, got {other:?}"),
        }
    });
}
