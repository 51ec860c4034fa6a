import { useState } from "preact/hooks";
import { api } from "../api";
import { ErrorBox } from "../ui";

/// Erases the box (its streams, users, tickets, recordings' index) at a restart; the wallet's
/// keystore is kept unless the operator says otherwise. Asked twice, as the button asks for a
/// second press.
export function FactoryReset() {
  const [armed, setArmed] = useState(false);
  const [keepKeys, setKeepKeys] = useState(true);
  const [done, setDone] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const reset = async () => {
    setError(null);
    try {
      await api("POST", "/api/system/factory-reset", { keep_keys: keepKeys });
      setDone(true);
    } catch (e) {
      setError(e);
    }
  };
  return (
    <div data-testid="factory-reset">
      <h2>Factory reset</h2>
      <ErrorBox error={error} />
      {done ? (
        <p>The box is erasing its data and restarting. Set it up again with the code on its console (or press its button).</p>
      ) : (
        <>
          <p>
            Erases every stream, user, token, unredeemed ticket and the recordings' index, then restarts into first-boot setup.
            Holding the box's button for 10 s, then pressing it again, does the same.
          </p>
          <label>
            <input type="checkbox" checked={keepKeys} onChange={(e) => setKeepKeys((e.target as HTMLInputElement).checked)} /> Keep the wallet's keystore
          </label>
          {armed ? (
            <>
              <button class="danger" onClick={reset}>Erase this box now</button>{" "}
              <button onClick={() => setArmed(false)}>Cancel</button>
            </>
          ) : (
            <button onClick={() => setArmed(true)}>Factory reset…</button>
          )}
        </>
      )}
    </div>
  );
}
