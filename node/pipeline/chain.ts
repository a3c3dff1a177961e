// One microbatch through the pipeline: forward through stages 0..S-1, loss and its gradient on
// the last, backward through S-2..0. Stage calls are stateless (a backward call carries its
// input again), so a StageCaller may be a local StageEngine or a remote replica with retries.
import type { FloatTensor, Tensor, TokenTensor } from '../runtime/tensor.js'

export interface StageCaller {
  forward(x: Tensor): Promise<FloatTensor>
  /** Accumulates the stage's gradients; returns the input gradient (none from stage 0). */
  backward(x: Tensor, gy: FloatTensor): Promise<FloatTensor | undefined>
  /** Last stage: mean loss (nats per token) and the input gradient; accumulates gradients. */
  lossBackward(x: Tensor, targets: TokenTensor): Promise<{ loss: number, gx?: FloatTensor }>
  /** Last stage: mean loss, no gradients. */
  loss(x: Tensor, targets: TokenTensor): Promise<number>
}

export interface Microbatch {
  /** int64 tokens [batch, time]. */
  x: TokenTensor
  /** int64 next-token ids [batch, time]. */
  targets: TokenTensor
}

/** Runs forward and backward for one microbatch over `stages` (in order); returns its mean loss. */
export async function trainMicrobatch (stages: readonly StageCaller[], batch: Microbatch): Promise<number> {
  const last = stages.length - 1
  const inputs: Tensor[] = [batch.x]
  for (let s = 0; s < last; s++) inputs.push(await stages[s].forward(inputs[s]))
  const { loss, gx } = await stages[last].lossBackward(inputs[last], batch.targets)
  let grad = gx
  for (let s = last - 1; s >= 0; s--) {
    if (grad === undefined) throw new Error(`stage ${s + 1} returned no input gradient`)
    grad = await stages[s].backward(inputs[s], grad)
  }
  return loss
}

/** The mean loss of one microbatch, without gradients. */
export async function evaluateMicrobatch (stages: readonly StageCaller[], batch: Microbatch): Promise<number> {
  const last = stages.length - 1
  let x: Tensor = batch.x
  for (let s = 0; s < last; s++) x = await stages[s].forward(x)
  return await stages[last].loss(x, batch.targets)
}
