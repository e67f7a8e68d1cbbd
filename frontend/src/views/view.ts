/** What a view is (an element updated from the state) and what it is given (its data, width and way to select). */
import type { DataSource } from '../load/data';
import type { State } from '../state';

export interface ViewContext {
  /** The data each view draws, keyed on the state (load/data.ts); views never fetch themselves. */
  data: DataSource;
  /** The current state (for handlers that run after a render). */
  state(): State;
  /** A user's selection (a click, a picker): patches the state. Views call it only from input handlers. */
  select(patch: Partial<State>): void;
  /** Width available to a view's content, CSS px. */
  width(): number;
}

export interface View {
  el: HTMLElement;
  update(s: State, changed: Set<keyof State> | 'all'): void;
}
