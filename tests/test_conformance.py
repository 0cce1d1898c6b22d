"""The conformance kit (plantain_core.testing.prove_family): every built-in family and the
example package's equal their own pipeline's ``__call__``; a family that describes a
k-diffusion pipeline (PixArt-Sigma with Euler-type schedulers, written here with no
scheduler workaround) equals it through the loop's scheduler protocol; and the kit fails a
family that gets the protocol wrong."""

from __future__ import annotations

import pathlib
import sys

import attrs
import numpy as np
import pytest
import torch

from plantain_core import BlockInfo, ModelFamily, Site
from plantain_core.models.family import encode_in_chunks, fresh_schedule
from plantain_core.models.loaders import LoadedModel, load_model
from plantain_core.testing import ConformanceError, plugins_registered, prove_family

ROOT = pathlib.Path(__file__).resolve().parents[1]

# every built-in tiny model: does its pipeline run CFG at guidance 3? (Klein base, as tiny is not
# distilled; SD3; Z-Image; PixArt-Sigma. Qwen-Image only with a negative prompt, which plantain never gives)
BUILTIN = {"tiny": True, "tiny-flux2-dev": False, "tiny-flux1": False, "tiny-flux1-kontext": False, "tiny-sd3": True,
           "tiny-qwen-image": False, "tiny-z-image": True, "tiny-pixart-sigma": True}


@pytest.mark.parametrize("model", sorted(BUILTIN))
def test_every_builtin_family_equals_its_pipeline_call(model):
    report = prove_family(model, steps=(1, 3), guidance=(1.0, 3.0))
    family = load_model(model, "cpu").family
    # every kind it declares, 1 and 3 steps, guidance 1 and 3, both layouts
    assert {c.kind for c in report.cases} == set(family.kinds)
    assert {(c.steps, c.guidance) for c in report.cases} == {(1, 1.0), (1, 3.0), (3, 1.0), (3, 3.0)}
    assert {c.layout for c in report.cases} == {"heads", "slices16"}
    assert all(len(c.per_step) == c.steps for c in report.cases)
    assert report.max_rel <= 1e-5
    assert {c.cfg for c in report.cases if c.guidance > 1} == {BUILTIN[model]}
    assert {c.cfg for c in report.cases if c.guidance == 1} == {False}
    print(f"\n{model}: kit max rel {report.max_rel:.2e}")


def test_the_example_family_equals_its_pipeline_call():
    sys.path.insert(0, str(ROOT / "examples" / "plantain-example"))
    try:
        import plantain_example

        with plugins_registered(example=plantain_example):
            report = prove_family("chroma", steps=(1, 3), guidance=(1.0, 3.0))
    finally:
        sys.path.remove(str(ROOT / "examples" / "plantain-example"))
    assert report.family == "chroma" and report.model == "tiny-chroma" and len(report.cases) == 8
    assert report.max_rel <= 1e-5 and any(c.cfg for c in report.cases)


def test_a_local_folder_runs_at_its_loaders_default_size_and_proves_itself(tmp_path):
    """The real-checkpoint path: a saved pipeline loaded by a HubLoader runs at the loader's
    ``default_size`` (it was always 1024 px) and equals its own pipeline there."""
    from plantain_core.models.loaders import HubLoader
    from plantain_plugins.families.flux1 import FLUX1

    folder = tmp_path / "flux1-folder"
    load_model("tiny-flux1", "cpu").pipeline.save_pretrained(folder)
    bundle = HubLoader(FLUX1, r"flux", "me/flux", default_size=64).load(str(folder), "cpu", "fp32")
    assert bundle.default_size == 64 and not bundle.is_tiny
    report = prove_family(bundle, steps=(1, 2), guidance=(3.0,))
    assert report.model == "flux1" and report.max_rel <= 1e-5


# -- a k-diffusion pipeline: PixArt-Sigma, described plainly -----------------------------------------------
class PixArtSigma(ModelFamily):
    """PixArt-Sigma as its pipeline describes it, and nothing more: no sigma recomputed,
    no scaling of its own; the loop's scheduler protocol does the rest."""

    name = "test-pixart-sigma"
    description = "PixArt-Sigma (test family)"
    pipeline_class = "PixArtSigmaPipeline"
    transformer_class = "PixArtTransformer2DModel"
    text_tokens = prompt_limit = 300
    timestep_scale = 1.0

    def sites(self, transformer):
        sites = []
        for i, block in enumerate(transformer.transformer_blocks):
            for kind, attn in (("self", block.attn1), ("cross", block.attn2)):
                info = BlockInfo(kind, i, attn.heads, attn.inner_dim // attn.heads, attn.inner_dim, 0, ("image",))
                sites.append(Site(info, "image", attn.to_out[0]))
        return sites

    def prompt_tokens(self, pipe, prompt):
        return list(pipe.tokenizer(prompt)["input_ids"])

    def encode_prompts(self, bundle, prompts):
        pipe = bundle.pipeline

        def encode(chunk):
            pe, mask, _, _ = pipe.encode_prompt(chunk, do_classifier_free_guidance=False, device=pipe._execution_device,
                                                max_sequence_length=self.text_tokens)
            return {"encoder_hidden_states": pe, "encoder_attention_mask": mask}

        with torch.inference_mode():
            return encode_in_chunks(prompts, encode), {}

    def call_kwargs(self, bundle, size):
        return {"use_resolution_binning": False, "clean_caption": False}

    def size_multiple(self, pipe):
        return pipe.vae_scale_factor * pipe.transformer.config.patch_size

    def noise(self, pipe, generator, size, dtype, device):
        return pipe.prepare_latents(1, pipe.transformer.config.in_channels, size[0], size[1], dtype, device,
                                    generator), None

    def model_input(self, latents, cond):
        return latents

    def text_kwargs(self, text, shared, n):
        return dict(text)

    def transformer_kwargs(self, pipe, hidden, timestep, text, ids, guidance):
        return dict(hidden_states=hidden, timestep=timestep, added_cond_kwargs={"resolution": None,
                                                                                "aspect_ratio": None},
                    return_dict=False, **text)

    def loop_timestep(self, t, latents):
        return t[None].expand(latents.shape[0])  # __call__ keeps the scheduler's dtype

    def prediction(self, out, n_latent):
        return out.chunk(2, dim=1)[0]  # learned sigma: the first half of the channels is the noise

    def schedule(self, pipe, steps, image_seq_len, device):
        from diffusers.pipelines.pixart_alpha.pipeline_pixart_sigma import retrieve_timesteps

        return fresh_schedule(pipe, steps, device, retrieve_timesteps)

    def uses_cfg(self, pipe, guidance):
        return guidance > 1.0


class NoScaling(PixArtSigma):
    """What plantain's loop did before it followed the scheduler protocol."""

    name = "test-pixart-noscale"

    def scale_model_input(self, scheduler, latents, t):
        return latents


def tiny_pixart(scheduler) -> LoadedModel:
    from diffusers import AutoencoderKL, PixArtSigmaPipeline, PixArtTransformer2DModel
    from plantain_core.models.tiny_text import T5_CONFIG, build_t5_encoder, build_t5_tokenizer

    tokenizer = build_t5_tokenizer()
    with torch.random.fork_rng(devices=[]):
        text_encoder = build_t5_encoder(tokenizer, T5_CONFIG, seed=0)
        torch.manual_seed(1)
        vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                            up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                            layers_per_block=1).eval()
        torch.manual_seed(2)
        transformer = PixArtTransformer2DModel(num_attention_heads=4, attention_head_dim=8, in_channels=4,
                                               out_channels=8, num_layers=2, cross_attention_dim=32, sample_size=16,
                                               caption_channels=T5_CONFIG["d_model"], norm_num_groups=8).eval()
    pipe = PixArtSigmaPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                               scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return LoadedModel(pipeline=pipe, name="tiny-pixart", id="plantain/tiny-pixart", revision="test-1", device="cpu",
                       dtype=torch.float32, default_size=32, is_tiny=True, family=PixArtSigma())


def _schedulers():
    from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

    return {"euler": EulerDiscreteScheduler(), "euler-leading": EulerDiscreteScheduler(timestep_spacing="leading"),
            "euler-ancestral": EulerAncestralDiscreteScheduler(), "dpm-solver": DPMSolverMultistepScheduler()}


@pytest.mark.parametrize("name", ["euler", "euler-leading", "euler-ancestral", "dpm-solver"])
def test_a_plain_family_of_a_k_diffusion_pipeline_equals_it(name):
    """Euler scales the input by 1/sqrt(sigma^2 + 1); with "leading" spacing init_noise_sigma
    depends on the steps set; the ancestral scheduler draws noise from the run's generator in
    every step; DPM-Solver keeps a history. Each through the kit, CFG included."""
    bundle = tiny_pixart(_schedulers()[name])
    own = bundle.pipeline.scheduler
    report = prove_family(bundle, steps=(1, 3), guidance=(1.0, 3.0))
    assert report.max_rel <= 1e-5 and len(report.cases) == 8
    assert bundle.pipeline.scheduler is own  # the loop's copy is the pipeline's only while noise is made
    assert {c.cfg for c in report.cases} == {False, True}


def test_the_kit_fails_a_family_that_skips_the_schedulers_input_scaling():
    from diffusers import EulerDiscreteScheduler

    bundle = tiny_pixart(EulerDiscreteScheduler())
    with pytest.raises(ConformanceError, match="test-pixart-noscale") as err:
        prove_family(bundle, family=NoScaling(), steps=(1, 3), guidance=(1.0,))
    report = prove_family(bundle, family=NoScaling(), steps=(1, 3), guidance=(1.0,), check=False)
    assert "FAIL" in str(err.value) and not report.ok
    # the first of 3 steps is at sigma ~14.6: the unscaled input is ~15x too large; one step is
    # at t = 0 (sigma 0.01), where the scaling is 1 - 5e-5 and the layer norms hide it
    assert report.max_rel > 0.1 and all(c.per_step[0] > 0.1 for c in report.cases if c.steps == 3)
    assert all(c.max_rel <= 1e-5 for c in report.cases if c.steps == 1)


def test_the_kit_fails_a_family_whose_cfg_claim_is_wrong():
    """The pipeline runs CFG at guidance 3; a family saying it does not is caught even at one
    step (the conditional row alone matches: the rows per step do not)."""
    from diffusers import EulerDiscreteScheduler

    class NoCfg(PixArtSigma):
        name = "test-pixart-nocfg"

        def uses_cfg(self, pipe, guidance):
            return False

    bundle = tiny_pixart(EulerDiscreteScheduler())
    report = prove_family(bundle, family=NoCfg(), steps=(1,), guidance=(3.0,), check=False)
    assert not report.ok and all("2 rows per step" in c.problem for c in report.cases)
    assert report.max_rel <= 1e-5  # the numbers of the conditional row still agree


def test_rows_step_alone_where_the_scheduler_draws_noise():
    """A step that draws from the stimuli's generators runs per row, each on its own copy of
    the scheduler (its step index advances once per step); one without steps the batch."""
    from diffusers import EulerAncestralDiscreteScheduler

    from plantain_core.capture.trajectory import step_groups

    sched = EulerAncestralDiscreteScheduler()
    sched.set_timesteps(3)
    kwargs = [{"generator": torch.Generator().manual_seed(s)} for s in (1, 2)]
    groups = step_groups(sched, kwargs)
    assert [g[1] for g in groups] == [slice(0, 1), slice(1, 2)] and groups[0][0] is not groups[1][0]
    single = step_groups(sched, [{"eta": 0.0}, {"eta": 0.0}])
    assert single == [(sched, slice(0, 2), {"eta": 0.0})]


def test_the_report_table_names_each_case():
    from plantain_core.testing import Case, ConformanceReport

    ok = Case("text-pair", 3, 1.0, False, "heads", (1e-7, 2e-7, 3e-7))
    bad = attrs.evolve(ok, layout="slices16", per_step=(1e-7, 0.5, np.nan))
    report = ConformanceReport("fam", "tiny-fam", 1e-5, (ok, bad))
    assert report.failures == (bad,) and not report.ok and report.by_layout()["heads"] == 3e-7
    text = str(report)
    assert "1 of 2 cases fail" in text and "FAIL text-pair" in text and "ok   text-pair" in text
    with pytest.raises(ConformanceError):
        report.check()


def test_the_default_padding_note_claims_nothing_a_family_did_not_say():
    from plantain_plugins.families.flux1 import FLUX1
    from plantain_plugins.families.sd3 import SD3

    note = PixArtSigma().padding_note()  # PixArt masks its padding: the default must not deny it
    assert "attention mask" in note and "no attention mask" not in note and "300" in note
    assert "does not say" in note and "test-pixart-sigma" in note
    # the families whose pipelines have no text mask still say so
    assert FLUX1.padding_note() == "The text stream is padded to 512 tokens with no attention mask"
    assert SD3.padding_note() == "The text stream is padded to 333 tokens with no attention mask"


def test_a_reference_step_count_that_is_no_whole_number_breaks_the_contract():
    from plantain_core.models.family import contract_problem

    class Zero(PixArtSigma):
        reference_steps_for_one = 0

    class Fraction(PixArtSigma):
        reference_steps_for_one = 2.0

    assert contract_problem(PixArtSigma()) is None
    for bad in (Zero(), Fraction()):
        assert contract_problem(bad) == "`reference_steps_for_one` must be a positive integer"
