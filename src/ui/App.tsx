import { useEffect } from 'react';
import { useDeviceStore } from '../stores/deviceStore';
import { DeviceReportPanel } from './DeviceReportPanel';

export function App() {
  const probe = useDeviceStore((s) => s.probe);
  useEffect(() => {
    void probe();
  }, [probe]);

  return (
    <div className="app">
      <header className="app-header">
        <h1>Hark</h1>
        <p className="tagline">Ask questions about a recording. The model runs on your device; nothing is uploaded.</p>
      </header>
      <main>
        <DeviceReportPanel />
      </main>
    </div>
  );
}
