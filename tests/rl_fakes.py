"""Hand-made finished rollouts for the reward tests: an environment stand-in with a scripted episode record."""

from pxr import data


class FakeEnvironment:
    """Stands in for a finished rollout's environment: a query and a scripted episode record."""

    def __init__(self, qid, executed, requested=None, ending="answer"):
        self.query = data.RLQuery(qid=qid, question="q", answer=["3"])
        self.record = {
            "ops_requested": executed if requested is None else requested,
            "ops_executed": executed,
            "ops_failed": (executed if requested is None else requested) - executed,
            "last_op_failed_unfixed": False,
            "ending": ending,
        }

    def _close(self, final, truncated=False, delivered=None):
        return {**self.record, "ending": "truncated" if truncated else self.record["ending"]}


def batch():
    """Three groups of G = 4 (12 rollouts): split over 2 processes, the middle group straddles them."""
    ops = [1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 3]
    answers = ["\\boxed{3}", "\\boxed{5}", "\\boxed{5}", "\\boxed{3}"] * 3
    envs = [FakeEnvironment("abc"[i // 4], n) for i, n in enumerate(ops)]
    return envs, answers
