use std::collections::BTreeMap;

use arrow::array::{Array, Float64Array, Int64Array, StringArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::*;

fn batch(ids: &[i64], regions: &[Option<&str>]) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("region", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(regions.to_vec())),
        ],
    )
    .expect("batch")
}

/// `rows` rows sorted by (region, city, id): runs of very different lengths, NULL regions and
/// cities last (as the engine sorts) unless `null_keys` is false, nullable payloads with a
/// null every few rows, so slices and files cut through runs.
fn table(rows: usize, null_keys: bool) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, true),
        Field::new("id", DataType::Int64, false),
        Field::new("city", DataType::Utf8, true),
        Field::new("note", DataType::Utf8, true),
        Field::new("amount", DataType::Float64, true),
    ]));
    // Each region gets a share of the rows; shares chosen so runs are long and short.
    let shares: [(Option<&str>, usize); 5] = [
        (Some("Nord/Ost"), 55),
        (Some("Süd"), 1),
        (Some("West"), 30),
        (Some("Zentrum"), 3),
        (if null_keys { None } else { Some("Zz") }, 11),
    ];
    let total: usize = shares.iter().map(|(_, s)| s).sum();
    let mut region = Vec::with_capacity(rows);
    let mut city = Vec::with_capacity(rows);
    let mut id = Vec::with_capacity(rows);
    let mut note = Vec::with_capacity(rows);
    let mut amount = Vec::with_capacity(rows);
    let mut next = 0usize;
    for (index, (name, share)) in shares.iter().enumerate() {
        let n = if index + 1 == shares.len() {
            rows - next
        } else {
            rows * share / total
        };
        for i in 0..n {
            region.push(*name);
            // Two cities per region, the second (NULL) only for the last fifth.
            city.push(if i < n - n / 5 {
                Some("A")
            } else if null_keys {
                None
            } else {
                Some("B")
            });
            id.push((next + i) as i64);
            note.push(if i % 7 == 0 {
                None
            } else {
                Some(format!("n{}", (i * 31) % 1000))
            });
            amount.push(if i % 11 == 0 {
                None
            } else {
                Some(i as f64 * 0.5)
            });
        }
        next += n;
    }
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(region)),
            Arc::new(Int64Array::from(id)),
            Arc::new(StringArray::from(city)),
            Arc::new(StringArray::from(note)),
            Arc::new(Float64Array::from(amount)),
        ],
    )
    .expect("table")
}

fn chunks(whole: &RecordBatch, size: usize) -> Vec<RecordBatch> {
    (0..whole.num_rows())
        .step_by(size)
        .map(|offset| whole.slice(offset, size.min(whole.num_rows() - offset)))
        .collect()
}

fn meta() -> Vec<(String, String)> {
    vec![("segflow.period".to_string(), "2025".to_string())]
}

/// Every file under `dir` with its sha256, so stray or overwritten files show up too.
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).expect("ls") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .into_owned();
                out.insert(relative, sha256_file(&path).expect("sha").1);
            }
        }
    }
    let mut out = BTreeMap::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

fn stream(
    dir: &Path,
    batches: &[RecordBatch],
    schema: SchemaRef,
    partition_by: &[String],
    max_rows: usize,
    slice_rows: usize,
) -> Vec<WrittenFile> {
    let mut writer =
        TableWriter::with_slice_rows(dir, schema, partition_by, max_rows, &meta(), slice_rows)
            .expect("new");
    for batch in batches {
        writer.push(batch).expect("push");
    }
    writer.finish().expect("finish")
}

/// Streams `whole` in batches of each size and asserts the same files, bytes and listing as
/// the old whole-table writer produced from one concatenated batch.
fn assert_same_as_legacy(
    whole: &RecordBatch,
    partition_by: &[String],
    max_rows: usize,
    slice_rows: usize,
    batch_sizes: &[usize],
) {
    let tmp = tempfile::tempdir().expect("tmp");
    let expected_dir = tmp.path().join("legacy");
    let expected = legacy::write_table(
        &expected_dir,
        whole.schema(),
        std::slice::from_ref(whole),
        partition_by,
        max_rows,
        &meta(),
        slice_rows,
    )
    .expect("legacy");
    let expected_tree = tree(&expected_dir);
    assert_eq!(expected.len(), expected_tree.len());
    for &size in batch_sizes {
        let dir = tmp.path().join(format!("streamed-{size}"));
        let files = stream(
            &dir,
            &chunks(whole, size),
            whole.schema(),
            partition_by,
            max_rows,
            slice_rows,
        );
        assert_eq!(files, expected, "batches of {size} rows");
        assert_eq!(tree(&dir), expected_tree, "batches of {size} rows");
    }
}

/// (id, region) of every row in the files, read back from disk.
fn read_back(dir: &Path, files: &[WrittenFile]) -> Vec<(i64, String)> {
    let mut rows = Vec::new();
    for file in files {
        let path = dir.join(&file.relative_path);
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).expect("open"))
            .expect("parquet")
            .build()
            .expect("reader");
        let mut in_file = 0u64;
        for batch in reader {
            let batch = batch.expect("batch");
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("ids");
            in_file += batch.num_rows() as u64;
            let directory = file
                .relative_path
                .rsplit_once('/')
                .map(|(d, _)| d.to_string())
                .unwrap_or_default();
            rows.extend(ids.values().iter().map(|&id| (id, directory.clone())));
        }
        assert_eq!(in_file, file.rows, "{}", file.relative_path);
    }
    rows.sort();
    rows
}

#[test]
fn streaming_matches_the_whole_table_writer_byte_for_byte_across_small_slices() {
    // Small slices (8 rows) and files (20 rows) cross many slice and file boundaries, in
    // every directory, with little data; batch sizes straddle both.
    let whole = table(537, true);
    for partition_by in [
        vec![],
        vec!["region".to_string()],
        vec!["region".to_string(), "city".to_string()],
    ] {
        for max_rows in [1, 8, 20, 1000] {
            assert_same_as_legacy(
                &whole,
                &partition_by,
                max_rows,
                8,
                &[1, 3, 7, 8, 13, 64, 537],
            );
        }
    }
}

#[test]
fn streaming_matches_the_whole_table_writer_byte_for_byte_with_real_slices() {
    // Slices of more than 1,024 rows are where a validity bitmap without nulls changes the
    // bytes, and the old writer kept one in a null-free slice whenever the column had a null
    // anywhere in the table (see `old_writer_bytes_depended_on_batching_streamed_ones_do_not`).
    // So every nullable data column here has nulls in every large slice, or none at all.
    let whole = table(140_000, false);
    // One file of 100,000 rows written as 65,536 + 34,464, then 40,000.
    assert_same_as_legacy(&whole, &[], 100_000, WRITE_SLICE_ROWS, &[1, 8_192, 140_000]);
    // Nord/Ost: 77,000 rows as 70,000 (65,536 + 4,464) and 7,000; West: 42,000.
    assert_same_as_legacy(
        &whole,
        &["region".to_string()],
        70_000,
        WRITE_SLICE_ROWS,
        &[7, 8_192, 140_000],
    );
    let whole = table(140_000, true);
    assert_same_as_legacy(
        &whole,
        &["region".to_string(), "city".to_string()],
        70_000,
        WRITE_SLICE_ROWS,
        &[8_192],
    );
}

/// `rows` non-null notes in one nullable column; `valid_bitmap` adds a bitmap that marks every
/// row valid, as DataFusion kernels sometimes produce.
fn notes(rows: usize, valid_bitmap: bool) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("region", DataType::Utf8, false),
        Field::new("note", DataType::Utf8, true),
    ]));
    let values: Vec<String> = (0..rows).map(|i| format!("v{}", i % 100)).collect();
    let (offsets, data, _) = StringArray::from(values).into_parts();
    let nulls = valid_bitmap.then(|| NullBuffer::new_valid(rows));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a"; rows])),
            Arc::new(StringArray::new(offsets, data, nulls)),
        ],
    )
    .expect("notes")
}

#[test]
fn old_writer_bytes_depended_on_batching_streamed_ones_do_not() {
    // 25,000 rows cross parquet's 20,000-row page limit, where the bitmap changes the pages.
    let tmp = tempfile::tempdir().expect("tmp");
    let with_bitmap = notes(25_000, true);
    let legacy_for = |name: &str, batches: &[RecordBatch]| {
        let dir = tmp.path().join(name);
        legacy::write_table(
            &dir,
            with_bitmap.schema(),
            batches,
            &[],
            100_000,
            &meta(),
            WRITE_SLICE_ROWS,
        )
        .expect("legacy")
    };
    let one_batch = legacy_for("legacy-one", std::slice::from_ref(&with_bitmap));
    let split = legacy_for("legacy-split", &chunks(&with_bitmap, 10_000));
    assert_ne!(
        one_batch, split,
        "the old writer's bytes depended on batching"
    );
    for (name, batches) in [
        ("one", vec![with_bitmap.clone()]),
        ("split", chunks(&with_bitmap, 10_000)),
        ("rows", chunks(&with_bitmap, 1)),
        ("no-bitmap", vec![notes(25_000, false)]),
    ] {
        let files = stream(
            &tmp.path().join(name),
            &batches,
            with_bitmap.schema(),
            &[],
            100_000,
            WRITE_SLICE_ROWS,
        );
        assert_eq!(files, split, "{name}");
    }
}

#[test]
fn a_file_does_not_depend_on_nulls_in_other_directories() {
    let a = notes(25_000, false);
    let b_column = |null: bool| -> RecordBatch {
        RecordBatch::try_new(
            a.schema(),
            vec![
                Arc::new(StringArray::from(vec!["b", "b"])),
                Arc::new(StringArray::from(vec![Some("x"), (!null).then_some("y")])),
            ],
        )
        .expect("b")
    };
    let tmp = tempfile::tempdir().expect("tmp");
    let region = ["region".to_string()];
    let mut streamed = Vec::new();
    let mut old = Vec::new();
    for null in [false, true] {
        let batches = [a.clone(), b_column(null)];
        let dir = tmp.path().join(format!("streamed-{null}"));
        streamed.push(
            stream(
                &dir,
                &batches,
                a.schema(),
                &region,
                100_000,
                WRITE_SLICE_ROWS,
            )[0]
            .clone(),
        );
        let dir = tmp.path().join(format!("legacy-{null}"));
        let files = legacy::write_table(
            &dir,
            a.schema(),
            &batches,
            &region,
            100_000,
            &meta(),
            WRITE_SLICE_ROWS,
        )
        .expect("legacy");
        old.push(files[0].clone());
    }
    assert_eq!(streamed[0].relative_path, "region=a/part-00000.parquet");
    assert_eq!(
        streamed[0], streamed[1],
        "region=a must not change when region=b gains a NULL"
    );
    assert_eq!(
        streamed[0], old[0],
        "as before while no other directory has a NULL"
    );
    assert_ne!(
        old[0], old[1],
        "the old writer let region=b's NULL change region=a's file"
    );
}

#[test]
fn write_table_is_the_streaming_writer() {
    let whole = table(300, true);
    let tmp = tempfile::tempdir().expect("tmp");
    let partition_by = ["region".to_string(), "city".to_string()];
    let a = write_table(
        &tmp.path().join("a"),
        whole.schema(),
        &chunks(&whole, 17),
        &partition_by,
        40,
        &meta(),
    )
    .expect("a");
    let b = stream(
        &tmp.path().join("b"),
        std::slice::from_ref(&whole),
        whole.schema(),
        &partition_by,
        40,
        WRITE_SLICE_ROWS,
    );
    assert_eq!(a, b);
    assert_eq!(tree(&tmp.path().join("a")), tree(&tmp.path().join("b")));
}

#[test]
fn empty_input_gives_one_empty_file_like_before() {
    let whole = table(0, true);
    assert_same_as_legacy(&whole, &[], 10, WRITE_SLICE_ROWS, &[1]);
    let tmp = tempfile::tempdir().expect("tmp");
    let files = stream(
        tmp.path(),
        &[whole.clone(), whole.clone()],
        whole.schema(),
        &[],
        10,
        WRITE_SLICE_ROWS,
    );
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].relative_path, "part-00000.parquet");
    assert_eq!(files[0].rows, 0);
    // With sub-partitions there is no directory to put an empty file in, as before.
    assert_same_as_legacy(&whole, &["region".to_string()], 10, WRITE_SLICE_ROWS, &[1]);
    let files = write_table(
        &tmp.path().join("p"),
        whole.schema(),
        &[],
        &["region".to_string()],
        10,
        &[],
    )
    .expect("write");
    assert!(files.is_empty());
}

#[test]
fn empty_string_and_null_sub_partition_share_one_directory_without_losing_rows() {
    // Sorted as the engine sorts (NULLs last): '' and NULL both encode to
    // __HIVE_DEFAULT_PARTITION__ but are not adjacent. The old writer wrote them as two
    // ranges into the same part-00000.parquet: the second truncated the first and the file
    // list named that path twice.
    let regions = [
        Some(""),
        Some(""),
        Some(""),
        Some("a"),
        Some("a"),
        None,
        None,
        None,
    ];
    let ids: Vec<i64> = (1..=regions.len() as i64).collect();
    let whole = batch(&ids, &regions);
    let partition_by = ["region".to_string()];
    let default = "region=__HIVE_DEFAULT_PARTITION__";
    let expected: Vec<(i64, String)> = {
        let mut rows: Vec<_> = ids
            .iter()
            .zip(regions)
            .map(|(&id, r)| {
                let d = if r == Some("a") { "region=a" } else { default };
                (id, d.to_string())
            })
            .collect();
        rows.sort();
        rows
    };
    // The old path: the shared directory listed twice, and its file holds only the NULL rows.
    let tmp = tempfile::tempdir().expect("tmp");
    let old = legacy::write_table(
        tmp.path(),
        whole.schema(),
        std::slice::from_ref(&whole),
        &partition_by,
        10,
        &[],
        WRITE_SLICE_ROWS,
    )
    .expect("legacy");
    assert_eq!(old.len(), 3);
    assert_eq!(old[0].relative_path, old[2].relative_path);
    assert_eq!(
        read_back(tmp.path(), &old[2..]).len(),
        3,
        "5 of 8 rows survive"
    );
    for size in [1, 2, 3, 8] {
        for max_rows in [2, 4, 10] {
            let tmp = tempfile::tempdir().expect("tmp");
            let files = write_table(
                tmp.path(),
                whole.schema(),
                &chunks(&whole, size),
                &partition_by,
                max_rows,
                &[],
            )
            .expect("write");
            // Every row once, each path once, and nothing on disk but the listed files.
            assert_eq!(read_back(tmp.path(), &files), expected, "batches of {size}");
            let listed: BTreeMap<String, String> = files
                .iter()
                .map(|f| (f.relative_path.clone(), f.sha256.clone()))
                .collect();
            assert_eq!(listed.len(), files.len(), "{files:?}");
            assert_eq!(tree(tmp.path()), listed);
            // The shared directory's files are numbered from 0 without gaps, in stream order.
            let names: Vec<_> = files.iter().map(|f| f.relative_path.as_str()).collect();
            let shared = 6usize.div_ceil(max_rows);
            let mut want: Vec<String> = (0..shared)
                .map(|i| format!("{default}/part-{i:05}.parquet"))
                .collect();
            want.push("region=a/part-00000.parquet".to_string());
            assert_eq!(names, want, "batches of {size}, files of {max_rows}");
        }
    }
}

#[test]
fn a_default_directory_that_reappears_below_another_level_keeps_all_rows() {
    // Two levels: region='' and region=NULL each run through cities x and y, so
    // region=__HIVE_DEFAULT_PARTITION__/city=x comes back after region=a/… was written;
    // within region=a, city '' and city NULL share a directory too.
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("region", DataType::Utf8, true),
        Field::new("city", DataType::Utf8, true),
    ]));
    let rows: [(Option<&str>, Option<&str>); 8] = [
        (Some(""), Some("x")),
        (Some(""), Some("y")),
        (Some("a"), Some("")),
        (Some("a"), Some("x")),
        (Some("a"), None),
        (Some("b"), Some("x")),
        (None, Some("x")),
        (None, Some("y")),
    ];
    let whole = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from((1..=8).collect::<Vec<i64>>())),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("batch");
    let tmp = tempfile::tempdir().expect("tmp");
    let files = stream(
        tmp.path(),
        &chunks(&whole, 1),
        schema,
        &["region".to_string(), "city".to_string()],
        10,
        WRITE_SLICE_ROWS,
    );
    let d = "__HIVE_DEFAULT_PARTITION__";
    let listed: Vec<(&str, u64)> = files
        .iter()
        .map(|f| (f.relative_path.as_str(), f.rows))
        .collect();
    assert_eq!(
        listed,
        vec![
            (format!("region={d}/city=x/part-00000.parquet").as_str(), 2),
            (format!("region={d}/city=y/part-00000.parquet").as_str(), 2),
            (format!("region=a/city={d}/part-00000.parquet").as_str(), 2),
            ("region=a/city=x/part-00000.parquet", 1),
            ("region=b/city=x/part-00000.parquet", 1),
        ]
    );
    let ids: Vec<i64> = {
        let reader = ParquetRecordBatchReaderBuilder::try_new(
            File::open(
                tmp.path()
                    .join(format!("region={d}/city=x/part-00000.parquet")),
            )
            .expect("open"),
        )
        .expect("parquet")
        .build()
        .expect("reader");
        reader
            .flat_map(|b| {
                let b = b.expect("batch");
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .expect("ids")
                    .values()
                    .to_vec()
            })
            .collect()
    };
    assert_eq!(ids, vec![1, 7], "rows in stream order");
}

#[test]
fn directories_the_stream_has_left_are_closed_as_it_goes() {
    // Bounded memory and file handles: only directories a sorted stream can come back to
    // stay open.
    let regions: Vec<Option<String>> = (0..50)
        .flat_map(|r| std::iter::repeat_n(Some(format!("r{r:02}")), 3))
        .collect();
    let ids: Vec<i64> = (0..regions.len() as i64).collect();
    let refs: Vec<Option<&str>> = regions.iter().map(|r| r.as_deref()).collect();
    let whole = batch(&ids, &refs);
    let tmp = tempfile::tempdir().expect("tmp");
    let mut writer =
        TableWriter::new(tmp.path(), whole.schema(), &["region".to_string()], 2, &[]).expect("new");
    for piece in chunks(&whole, 2) {
        writer.push(&piece).expect("push");
        assert_eq!(writer.open.len(), 1);
    }
    let files = writer.finish().expect("finish");
    assert_eq!(files.len(), 100);
}

#[test]
fn pending_rows_stay_in_a_few_private_chunks() {
    // One-row batches must not pile up one chunk (or one borrowed input batch) per row.
    let whole = table(5_000, true);
    let tmp = tempfile::tempdir().expect("tmp");
    let mut writer = TableWriter::new(tmp.path(), whole.schema(), &[], 100_000, &[]).expect("new");
    for piece in chunks(&whole, 1) {
        writer.push(&piece).expect("push");
        let partition = &writer.partitions[0];
        assert!(partition.pending.len() <= 14, "{}", partition.pending.len());
        assert_eq!(partition.owned, partition.pending.len());
    }
    // A big batch leaves only its tail pending, copied out of the batch.
    let mut writer =
        TableWriter::with_slice_rows(tmp.path(), whole.schema(), &[], 100_000, &[], 1_000)
            .expect("new");
    writer.push(&whole.slice(0, 4_500)).expect("push");
    let partition = &writer.partitions[0];
    assert_eq!(partition.pending_rows, 500);
    let pending = &partition.pending[0];
    assert_eq!(pending.column(1).to_data().buffers()[0].len(), 500 * 8);
}

#[test]
fn rows_for_a_finished_directory_are_an_error_not_an_overwrite() {
    let tmp = tempfile::tempdir().expect("tmp");
    let b = batch(&[1, 2, 3], &[Some("a"), Some("b"), Some("a")]);
    let err = write_table(
        tmp.path(),
        b.schema(),
        &[b],
        &["region".to_string()],
        10,
        &[],
    )
    .expect_err("unsorted");
    assert!(
        matches!(&err, SinkError::UnsortedPartition { path } if path.ends_with("region=a")),
        "{err}"
    );
}

#[test]
fn a_missing_partition_column_names_the_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let b = batch(&[1], &[Some("a")]);
    let err = TableWriter::new(tmp.path(), b.schema(), &["city".to_string()], 10, &[])
        .expect_err("missing");
    assert!(
        matches!(err, SinkError::MissingPartitionColumn { ref column, .. } if column == "city")
    );
}

#[test]
fn same_rows_in_different_batches_give_identical_bytes() {
    let dir = tempfile::tempdir().expect("tmp");
    let whole = batch(&[1, 2, 3, 4], &[Some("a"), Some("a"), Some("b"), None]);
    let a = write_table(
        &dir.path().join("a"),
        whole.schema(),
        std::slice::from_ref(&whole),
        &[],
        10,
        &meta(),
    )
    .expect("a");
    let pieces = [whole.slice(0, 1), whole.slice(1, 3)];
    let b = write_table(
        &dir.path().join("b"),
        whole.schema(),
        &pieces,
        &[],
        10,
        &meta(),
    )
    .expect("b");
    assert_eq!(a, b);
    assert_eq!(a[0].rows, 4);
}

#[test]
fn splits_files_and_partitions() {
    let dir = tempfile::tempdir().expect("tmp");
    let b = batch(
        &[1, 2, 3, 4, 5],
        &[Some("a/b"), Some("a/b"), Some("a/b"), Some("c"), None],
    );
    let files = write_table(
        dir.path(),
        b.schema(),
        &[b],
        &["region".to_string()],
        2,
        &[],
    )
    .expect("write");
    let names: Vec<(&str, u64)> = files
        .iter()
        .map(|f| (f.relative_path.as_str(), f.rows))
        .collect();
    assert_eq!(
        names,
        vec![
            ("region=a%2Fb/part-00000.parquet", 2),
            ("region=a%2Fb/part-00001.parquet", 1),
            ("region=c/part-00000.parquet", 1),
            ("region=__HIVE_DEFAULT_PARTITION__/part-00000.parquet", 1),
        ]
    );
}
