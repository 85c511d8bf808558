"""The task tests' checkpoint folders, built once per session and shared by every tests/pipelines/test_<task>.py."""
import pytest

from reference import sst2_train_texts
from task_checkpoints import LONG, NER_LABELS, POSITIONS, checkpoint, labels, uncased_tokenizer


@pytest.fixture(scope="session")
def cased_dir(tmp_path_factory):
    """A small cased WordPiece trained on SST-2 (and its title-cased lines), saved by transformers."""
    from tokenizers import BertWordPieceTokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import BertTokenizerFast

    lines = sst2_train_texts(3000)
    corpus = lines + [line.title() for line in lines] + [LONG] * 5
    wp = BertWordPieceTokenizer(lowercase=False, strip_accents=False)
    wp.train_from_iterator(corpus, vocab_size=2000, min_frequency=2)
    cls, sep = wp.token_to_id("[CLS]"), wp.token_to_id("[SEP]")  # training leaves BERT's template unset
    wp._tokenizer.post_processor = TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                      special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    folder = tmp_path_factory.mktemp("cased_tokenizer")
    BertTokenizerFast(tokenizer_object=wp._tokenizer, do_lower_case=False, model_max_length=POSITIONS,
                      unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                      mask_token="[MASK]").save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def uncased_dir(tmp_path_factory):
    return uncased_tokenizer(tmp_path_factory.mktemp("uncased_tokenizer"))


@pytest.fixture(scope="session")
def cls_dir(tmp_path_factory, uncased_dir):
    return checkpoint(tmp_path_factory, "cls", "bert", "sequence-classification", uncased_dir, seed=3,
                      **labels(["neg", "neutral", "pos"]))


@pytest.fixture(scope="session")
def nli_dir(tmp_path_factory, uncased_dir):
    return checkpoint(tmp_path_factory, "nli", "distilbert", "sequence-classification", uncased_dir, seed=4,
                      **labels(["contradiction", "neutral", "entailment"]))


@pytest.fixture(scope="session")
def mlm_dirs(tmp_path_factory, uncased_dir):
    return [checkpoint(tmp_path_factory, f"mlm_{f}", f, "masked-lm", uncased_dir, seed=5) for f in ("bert", "distilbert")]


@pytest.fixture(scope="session")
def ner_dir(tmp_path_factory, cased_dir):
    return checkpoint(tmp_path_factory, "ner", "bert", "token-classification", cased_dir, seed=6, **labels(NER_LABELS))


@pytest.fixture(scope="session")
def qa_dir(tmp_path_factory, cased_dir):
    return checkpoint(tmp_path_factory, "qa", "distilbert", "question-answering", cased_dir, seed=7)


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory, uncased_dir):
    return checkpoint(tmp_path_factory, "base", "bert", "model", uncased_dir, seed=8)
