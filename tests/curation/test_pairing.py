import json

import pytest

from tests.curation.helpers import read_jsonl
from training.data.errors import ConfigError, ResumeConflictError
from training.curate.executor import Ready
from training.curate.pairing import (PairingConfig, PromptItem, inputs_fingerprint, pair_prompts, run_generation,
                                     write_job_shards)

STYLES = [PromptItem(f"style{i}", f"style prompt {i}") for i in range(6)]
CONTENTS = [PromptItem(f"content{i}", f"content prompt {i}") for i in range(10)]


def test_pairing_is_deterministic_distinct_and_per_style_stable():
    config = PairingConfig(contents_per_style=4, seed=7, template="{content} | {style}")
    jobs = pair_prompts(STYLES, CONTENTS, config)
    assert len(jobs) == 24
    assert [j.to_dict() for j in jobs] == [j.to_dict() for j in pair_prompts(STYLES, CONTENTS, config)]
    for style in STYLES:
        picked = [j.content_id for j in jobs if j.style_id == style.id]
        assert len(picked) == len(set(picked)) == 4
    assert jobs[0].prompt == f"{jobs[0].content_prompt} | {jobs[0].style_prompt}"
    assert len({j.job_id for j in jobs}) == 24
    # A style's jobs depend only on (seed, style id): reordering or adding styles leaves them alone.
    reordered = pair_prompts([STYLES[3], PromptItem("new", "new style"), *STYLES[:3]], CONTENTS, config)
    by_style = lambda js, s: [(j.content_id, j.seed) for j in js if j.style_id == s]  # noqa: E731
    assert by_style(reordered, "style3") == by_style(jobs, "style3")
    other_seed = pair_prompts(STYLES, CONTENTS, PairingConfig(contents_per_style=4, seed=8))
    assert [j.content_id for j in other_seed] != [j.content_id for j in jobs]


def test_shards_are_resumable_and_conflicts_refused(tmp_path):
    config = PairingConfig(contents_per_style=3, seed=0, shard_size=5)
    jobs = pair_prompts(STYLES, CONTENTS, config)
    fingerprint = inputs_fingerprint(STYLES, CONTENTS)
    first = write_job_shards(jobs, tmp_path, config, fingerprint)
    assert (first.num_jobs, first.num_shards, len(first.written), len(first.skipped)) == (18, 4, 4, 0)
    rows = [row for i in range(4) for row in read_jsonl(tmp_path / f"shard-{i:05d}.jsonl")]
    assert [r["job_id"] for r in rows] == [j.job_id for j in jobs]

    (tmp_path / "shard-00002.jsonl").unlink()  # a shard lost: only that one is rewritten
    second = write_job_shards(jobs, tmp_path, config, fingerprint)
    assert second.written == ("shard-00002.jsonl",) and len(second.skipped) == 3

    with pytest.raises(ResumeConflictError, match="different config"):
        write_job_shards(jobs, tmp_path, PairingConfig(contents_per_style=3, seed=1, shard_size=5), fingerprint)
    with pytest.raises(ResumeConflictError, match="different inputs"):
        write_job_shards(jobs, tmp_path, config, "0" * 64)


def test_generation_run_resumes_after_a_crash(tmp_path):
    config = PairingConfig(contents_per_style=2, seed=0, shard_size=4)
    jobs = pair_prompts(STYLES, CONTENTS, config)
    write_job_shards(jobs, tmp_path, config, inputs_fingerprint(STYLES, CONTENTS))
    calls: list[str] = []

    def crashing_worker(batch):
        if len(calls) >= 5:
            raise RuntimeError("GPU fell over")
        calls.extend(j["job_id"] for j in batch)
        return [{"job_id": j["job_id"], "image": f"{j['job_id']}.png"} for j in batch]

    with pytest.raises(RuntimeError, match="GPU fell over"):
        run_generation(tmp_path, Ready(crashing_worker), batch_size=1)
    assert len(calls) == 5
    done_first = list(calls)

    def worker(batch):
        calls.extend(j["job_id"] for j in batch)
        return [{"job_id": j["job_id"], "image": f"{j['job_id']}.png"} for j in batch]

    report = run_generation(tmp_path, Ready(worker), batch_size=2)
    # Shard 0 (4 jobs) had finished, shard 1 had 1 of 4 jobs done.
    assert (report.shards_finished_before, report.jobs_already_done, report.jobs_ran) == (1, 5, 7)
    assert sorted(calls) == sorted(j.job_id for j in jobs)  # every job ran exactly once overall
    assert set(calls[5:]).isdisjoint(done_first)
    again = run_generation(tmp_path, Ready(worker), batch_size=2)
    assert (again.shards_finished_before, again.jobs_already_done, again.jobs_ran) == (3, 12, 0)
    results = [r for p in sorted((tmp_path / "results").glob("*.jsonl")) for r in read_jsonl(p)]
    assert sorted(r["job_id"] for r in results) == sorted(j.job_id for j in jobs)


def test_truncated_result_line_is_redone(tmp_path):
    config = PairingConfig(contents_per_style=1, seed=0, shard_size=10)
    jobs = pair_prompts(STYLES[:3], CONTENTS, config)
    write_job_shards(jobs, tmp_path, config, inputs_fingerprint(STYLES[:3], CONTENTS))
    results = tmp_path / "results" / "shard-00000.jsonl"
    results.parent.mkdir()
    results.write_text(json.dumps({"job_id": jobs[0].job_id}) + "\n" + '{"job_id": "' + jobs[1].job_id[:5])
    ran: list[str] = []
    run_generation(tmp_path, Ready(lambda b: [ran.append(j["job_id"]) or {"job_id": j["job_id"]} for j in b]))
    assert ran == [jobs[1].job_id, jobs[2].job_id]
    assert [r["job_id"] for r in read_jsonl(results)] == [j.job_id for j in jobs]


def test_pairing_config_errors():
    with pytest.raises(ConfigError, match="exactly the fields"):
        PairingConfig(template="{content} only")
    with pytest.raises(ConfigError, match="only 10 content prompts"):
        pair_prompts(STYLES, CONTENTS, PairingConfig(contents_per_style=11))
    with pytest.raises(ResumeConflictError, match="pair-prompts"):
        run_generation("/nonexistent/plan/dir", Ready(lambda b: b))
